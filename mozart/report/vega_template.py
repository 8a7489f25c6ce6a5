"""A `dvc plots show` page template with Vega inlined, so the plots render offline.

DVC's default page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net: on a cluster node without network
(and on this project's machines) the page stays blank. scripts/setup.sh installs the three packages from the npm
registry (`npm install vega@5 vega-lite@5 vega-embed@6`, the major versions dvc-render's specs are written for) and
runs this module, which writes one HTML file with their minified builds inside <script> tags and DVC's `{plot_divs}`
placeholder (no `{scripts}` placeholder, so DVC's CDN tags are left out). setup.sh then points DVC at it:

    python -m mozart.report.vega_template .dvc/tmp/vega/node_modules .dvc/tmp/plots-offline.html
    dvc config --local plots.html_template tmp/plots-offline.html      # relative to .dvc/

after which plain `dvc plots show` (or `dvc plots show --html-template .dvc/tmp/plots-offline.html`) works offline.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mozart.errors import MozartError

PACKAGES = ("vega", "vega-lite", "vega-embed")   # load order: vega-lite and vega-embed need vega
NPM_SPECS = ("vega@5", "vega-lite@5", "vega-embed@6")

PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>DVC plots (offline)</title>
{scripts}
<style>table {{ border-spacing: 15px; }} body {{ font-family: sans-serif; }}</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def bundle_path(node_modules: Path, package: str) -> Path:
    return Path(node_modules) / package / "build" / f"{package}.min.js"


def build_template(node_modules: str | Path, out: str | Path) -> Path:
    """Write the offline template to `out` from the packages under `node_modules`; returns `out`."""
    from mozart.infra.atomic import write_text

    scripts = []
    for package in PACKAGES:
        path = bundle_path(Path(node_modules), package)
        if not path.is_file():
            raise MozartError(f"{path} is missing: install the Vega scripts with `npm install --prefix DIR "
                              f"{' '.join(NPM_SPECS)}` and pass DIR/node_modules")
        code = path.read_text(encoding="utf-8").replace("</script", "<\\/script")  # cannot end the tag early
        scripts.append(f"<script>/* {package} (npm) */\n{code}\n</script>")
    page = PAGE.format(scripts="\n".join(scripts))
    write_text(Path(out), page)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("node_modules", help="folder holding vega/, vega-lite/ and vega-embed/ (npm install)")
    parser.add_argument("out", help="template file to write")
    args = parser.parse_args(argv)
    try:
        print(f"wrote {build_template(args.node_modules, args.out)}")
    except MozartError as exc:
        print(f"vega_template: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
