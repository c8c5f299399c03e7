"""Run inside the sandbox (never imported by docvl): execute the chart code, write its figure as PNG.

argv: width height (the input chart's pixels). The code's own stdout goes to stderr; the PNG alone goes
to stdout. Exit 0 when the code ran and a figure was saved; 1 with the traceback on stderr otherwise.
"""

import io
import os
import shutil
import sys
import traceback

png_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
os.makedirs("/sandbox/.matplotlib", exist_ok=True)
for name in os.listdir("/input"):
    if name.startswith("fontlist"):
        shutil.copy(os.path.join("/input", name), "/sandbox/.matplotlib/" + name)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

width, height = int(sys.argv[1]), int(sys.argv[2])
plt.show = lambda *args, **kwargs: None
with open("/input/chart.py", encoding="utf-8") as source:
    code = compile(source.read(), "chart.py", "exec")
try:
    exec(code, {"__name__": "__main__"})
except SystemExit as stop:
    if stop.code not in (0, None):
        traceback.print_exc()
        sys.exit(1)
except BaseException:
    traceback.print_exc()
    sys.exit(1)
numbers = plt.get_fignums()
figure = plt.figure(numbers[-1]) if numbers else plt.gcf()
figure.set_size_inches(width / 100, height / 100)
buffer = io.BytesIO()
figure.savefig(buffer, format="png", dpi=100)
png_out.write(buffer.getvalue())
png_out.flush()
