"""Stage `report`: reports/<name>/ (README.md, figures, tables, summary.json) from the pipeline's metrics, tables
and curves, with what it takes to recompute it beside it (params.yaml, run.json, lock.yaml); then the index of
every report folder, reports/README.md. `python -m pwl.report --check` recomputes every folder."""
from pwl import paths
from pwl.env import environment
from pwl.report import build, index, provenance
from pwl.stage_cli import main, setup


def run():
    params, _ = setup(__doc__, with_arch=False)
    out_dir = paths.report_dir(params.name)  # this report's own folder (the profile's, or a named variant's)
    record = provenance.record(environment())
    summary = build.write(params, record, out_dir)
    provenance.write(out_dir, params, record, provenance.extract_lock(params))
    paths.INDEX.write_text(index.build(paths.REPORTS))
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main(run)
