"""The HTML template of `dvc plots show` and `dvc plots diff`, with Vega, Vega-Lite and Vega-Embed inlined.

DVC's own template loads them from a CDN, so its plots are blank offline. `.dvc/config` names this template
(plots.html_template); `make setup` writes it with `python -m neurodigits.plots_template` from the pinned
vl-convert-python wheel, which ships the libraries.
"""

from __future__ import annotations

from pathlib import Path

from neurodigits.io import write_text
from neurodigits.params import project_root

TEMPLATE = Path(".dvc") / "plots" / "offline.html"  # .dvc/config: plots.html_template = plots/offline.html
VEGA_LITE = "5.21"  # DVC's plot specs are Vega-Lite v5

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script>%s</script>
    <style>table { border-spacing: 15px; }</style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def template_html() -> str:
    """DVC's page with the libraries inline and no {scripts} placeholder, so no CDN script tag is added."""
    import vl_convert  # noqa: PLC0415 - only this needs it

    return PAGE % vl_convert.javascript_bundle(vl_version=VEGA_LITE).replace("</script", "<\\/script")


def main() -> None:
    import vl_convert  # noqa: PLC0415

    write_text(project_root() / TEMPLATE, template_html())
    print(f"wrote {TEMPLATE}: Vega {vl_convert.get_vega_version()}, Vega-Lite {VEGA_LITE} and Vega-Embed "
          f"{vl_convert.get_vega_embed_version()} inline, so dvc plots show/diff work offline")


if __name__ == "__main__":
    main()
