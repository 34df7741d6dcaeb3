"""Build .dvc/plots/offline.html: DVC's plot page with vega, vega-lite and vega-embed inlined, so that
`dvc plots show` renders without internet. The scripts come from the npm registry (`npm pack`), at the
versions dvc-render links by default. Without npm, the page falls back to DVC's CDN links (with a warning)."""
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": ("5.20.2", "build/vega.min.js"), "vega-lite": ("5.2.0", "build/vega-lite.min.js"),
            "vega-embed": ("6.18.2", "build/vega-embed.min.js")}
OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot (offline)</title>
    %s
    <style> table { border-spacing: 15px; } </style>
</head>
<body>
    {plot_divs}
</body>
</html>"""


def fetch(name: str, version: str, member: str, workdir: Path) -> str:
    res = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent"], cwd=workdir, capture_output=True,
                         text=True, timeout=300, check=True)
    tgz = workdir / res.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        return tar.extractfile(f"package/{member}").read().decode("utf-8")


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scripts = [fetch(n, v, m, Path(tmp)) for n, (v, m) in PACKAGES.items()]
        tags = "\n".join('<script type="text/javascript">\n' + s.replace("</script", "<\\/script") + "\n</script>"
                         for s in scripts)
        ok = True
    except (OSError, subprocess.SubprocessError, KeyError) as e:
        print(f"warning: could not fetch vega scripts with npm ({e}); dvc plots show will need internet",
              file=sys.stderr)
        tags = "{scripts}"
        ok = False
    OUT.write_text(PAGE % tags, encoding="utf-8")
    print(f"wrote {OUT} ({'offline, scripts inlined' if ok else 'online fallback'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
