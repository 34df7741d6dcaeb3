"""Schemas without torch: what pwl/config.py validates params against. The model families' options
(families.py) and the objective's mode names and pairing rule (objective.py) live here, so that validating
params imports no nn.Module or loss code, and editing a loss or a model's forward never invalidates a stage
that only reads its params (prepare, train_*). The torch code imports its names from here."""
