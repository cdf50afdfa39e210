"""Take docs/window.png: the real window under Xvfb, mid-campaign to the local test inbox.

Needs Xvfb and ImageMagick's `import` (apt: xvfb imagemagick libxcb-cursor0); run with
`make screenshot`. Not part of the tests: it only makes the README's picture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = """
(function () {
  function set(id, value) {
    var el = document.getElementById(id);
    el.value = value;
    el.dispatchEvent(new Event('input', {bubbles: true}));
    el.dispatchEvent(new Event('change', {bubbles: true}));
  }
  set('paste', 'email,name\\nann@example.org,Ann\\nbob@example.org,Bob\\ncarol@example.org,Carol\\n' +
      'dave@example.org,Dave\\nerin@example.org,Erin\\nfrank@example.org,Frank\\nnot-an-address,Nobody\\n' +
      'grace@example.org,Grace\\nheidi@example.org,Heidi');
  document.getElementById('use-paste').click();
  setTimeout(function () {
    set('subject', 'Your invitation, {{ name }}');
    set('message', '<p>Hi {{ name }},</p>\\n<p>You are invited to our spring meetup.</p>');
    set('delay', '700');
    document.getElementById('send').click();
  }, 800);
  return true;
})()
"""


def drive(window, bridge, out: Path) -> None:
    try:
        window.events.loaded.wait(60)
        time.sleep(1.0)
        window.evaluate_js(STEPS)
        time.sleep(5.0)
        subprocess.run(["import", "-window", "root", str(out)], check=True)
    finally:
        bridge.cancel_campaign()  # else closing the window asks first, and nobody answers
        time.sleep(1.0)
        window.destroy()


def child(out: Path) -> int:
    from backend.credentials import EncryptedFileStore
    from backend.inbox import LocalInbox
    from bridge import Bridge, open_window

    bridge = Bridge(native_dialogs=True, inbox=LocalInbox(), store=EncryptedFileStore())
    return open_window(bridge, on_started=lambda w, b: drive(w, b, out))


def main() -> int:
    out = ROOT / "docs" / "window.png"
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(Path(sys.argv[2]))
    for tool in ("Xvfb", "import"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing: apt-get install xvfb imagemagick libxcb-cursor0", file=sys.stderr)
            return 2
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x860x24"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
               "BULK_MAILER_HOME": tempfile.mkdtemp(prefix="bm-shot-")}
        proc = subprocess.run([sys.executable, __file__, "--child", str(out)], env=env, timeout=120)
        print(f"wrote {out}" if out.exists() else "no screenshot taken")
        return proc.returncode
    finally:
        xvfb.terminate()


if __name__ == "__main__":
    sys.exit(main())
