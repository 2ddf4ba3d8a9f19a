#!/usr/bin/env python3
"""Loads the relay's dashboard in headless Chromium and reports what a person would see.

Speaks the DevTools protocol over --remote-debugging-pipe (file descriptors 3 and 4, messages
ended by NUL): the standard library is enough, no WebSocket client, no driver download. Used by
Tests/IntegrationTests/DashboardTests.swift, and by hand for docs/dashboard.png:

    dashboard-probe.py http://127.0.0.1:9002/ --gap 4 --screenshot docs/dashboard.png

Prints one JSON line when the two readings are taken: {"readings": [...], "filtered": ..., "errors": [...],
"failed": [...], "foreign": [...], "requests": N}. A reading maps each element id with a number
or text of interest to {"text", "value"}, plus the rows of the peer and route tables. With
--then-disconnected S it goes on watching and prints a second line, {"disconnected": true|false,
"seconds": ...}, once the page says it lost the endpoint (the caller stops the relay meanwhile).
Exit status 0 when it could take its readings, 1 otherwise (the reason on stderr).
"""
import argparse, base64, fcntl, json, os, select, shutil, signal, subprocess, sys, tempfile, time
from urllib.parse import urlsplit

READ = r"""(() => {
  const out = {};
  for (const el of document.querySelectorAll("[id]")) {
    if (el.children.length && !el.dataset.value) continue;
    out[el.id] = { text: el.textContent.trim(), value: el.dataset.value === undefined ? null : Number(el.dataset.value) };
  }
  const rows = (id) => [...document.querySelectorAll("#" + id + " tr")]
    .filter((tr) => !tr.querySelector(".empty")).map((tr) => [...tr.children].map((td) => td.textContent.trim()));
  out.peerRows = rows("peers");
  out.routeRows = rows("routes");
  out.link = document.body.dataset.link || null;
  out.polls = Number(document.body.dataset.polls || 0);
  out.scheme = matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  out.background = getComputedStyle(document.body).backgroundColor;
  out.color = getComputedStyle(document.body).color;
  return JSON.stringify(out);
})()"""


class Chromium:
    def __init__(self, binary, width, height):
        self.profile = tempfile.mkdtemp(prefix="dashboard-probe-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def child_fds():
            # Chromium reads commands on fd 3 and writes answers on fd 4. Move both ends out of
            # the way first: either may already sit on 3 or 4.
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-sync", "--disable-background-networking",
                "--disable-component-update", "--password-store=basic", "--use-mock-keychain", "--hide-scrollbars",
                f"--window-size={width},{height}", f"--user-data-dir={self.profile}", "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root.
        self.process = subprocess.Popen(args, preexec_fn=child_fds, pass_fds=(3, 4), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer, self.next_id, self.events, self.session = b"", 1, [], None

    def close(self):
        try:
            self.send("Browser.close", timeout=3)
        except Exception:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from Chromium in time")
            ready, _, _ = select.select([self.from_chrome], [], [], left)
            if ready:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    err = self.process.stderr.read().decode(errors="replace")[-2000:] if self.process.poll() is not None else ""
                    raise RuntimeError("Chromium closed the DevTools pipe " + err)
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, session=True, timeout=20):
        ident = self.next_id
        self.next_id += 1
        message = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds):
        """Collects events for `seconds`."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            pass

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate: {result['exceptionDetails']}")
        return result["result"].get("value")


class Watcher:
    """Sorts the page's events: errors (console, exceptions, log entries, CSP), failed and foreign requests."""

    def __init__(self, origin):
        self.origin, self.urls, self.requests = origin, {}, 0
        self.errors, self.failed, self.foreign = [], [], []

    def take(self, events):
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                texts = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
                self.errors.append(f"console.{params['type']}: {' '.join(texts)}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                self.errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "?")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                entry = params["entry"]
                self.errors.append(f"log {entry.get('source')} {entry['level']}: {entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                self.urls[params["requestId"]] = url
                self.requests += 1
                parts = urlsplit(url)
                if parts.scheme != "data" and f"{parts.scheme}://{parts.netloc}" != self.origin:
                    self.foreign.append(url)
            elif method == "Network.loadingFailed":
                self.failed.append(f"{self.urls.get(params['requestId'], '?')}: {params.get('errorText')}")
            elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                self.failed.append(f"{params['response']['url']}: HTTP {params['response']['status']}")
        events.clear()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    parser.add_argument("--polls", type=int, default=3, help="polls the page must have made before the first reading")
    parser.add_argument("--gap", type=float, default=3, help="seconds between the two readings")
    parser.add_argument("--timeout", type=float, default=40, help="seconds for everything up to the readings")
    parser.add_argument("--screenshot", help="a PNG of the whole page after the second reading")
    parser.add_argument("--dark", action="store_true", help="prefers-color-scheme: dark")
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--filter", metavar="TEXT", help="then type TEXT into the route filter and take a third reading, "
                        "\"filtered\", once the page shows the relay's answer")
    parser.add_argument("--then-disconnected", type=float, metavar="S", help="then wait up to S seconds for 'disconnected'")
    options = parser.parse_args()
    parts = urlsplit(options.url)
    watcher = Watcher(f"{parts.scheme}://{parts.netloc}")
    browser = Chromium(options.chromium, options.width, options.height)
    deadline = time.monotonic() + options.timeout
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)
        browser.session = browser.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable")
        if options.dark:
            browser.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        browser.send("Page.navigate", {"url": options.url})

        def wait_for_polls(count):
            while True:
                polls = browser.evaluate("Number(document.body && document.body.dataset.polls || 0)") or 0
                if polls >= count:
                    return polls
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the page made {polls} successful polls, not {count}, within {options.timeout} s")
                browser.pump(0.1)

        polls = wait_for_polls(options.polls)
        readings = [json.loads(browser.evaluate(READ))]
        browser.pump(options.gap)
        wait_for_polls(polls + 2)
        readings.append(json.loads(browser.evaluate(READ)))
        if options.screenshot:
            size = browser.send("Page.getLayoutMetrics")["cssContentSize"]
            shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                          "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
            with open(options.screenshot, "wb") as file:
                file.write(base64.b64decode(shot["data"]))
        filtered = None
        if options.filter:
            # As a person types: the value, then an input event; the page asks the relay for the
            # matching rows and says "N of M routes" once it has them.
            browser.evaluate("(() => { const box = document.getElementById('routes-filter'); box.value = %s;"
                             " box.dispatchEvent(new Event('input')); return true; })()" % json.dumps(options.filter))
            while " of " not in (browser.evaluate("document.getElementById('routes-count').textContent") or ""):
                if time.monotonic() > deadline + 10:
                    raise TimeoutError(f"the route table did not show the filter {options.filter!r}")
                browser.pump(0.1)
            filtered = json.loads(browser.evaluate(READ))
        watcher.take(browser.events)
        print(json.dumps({"readings": readings, "filtered": filtered, "errors": watcher.errors, "failed": watcher.failed,
                          "foreign": watcher.foreign, "requests": watcher.requests}), flush=True)
        if options.then_disconnected:
            start = time.monotonic()
            link = None
            while time.monotonic() - start < options.then_disconnected:
                link = browser.evaluate("document.body.dataset.link || ''")
                if link == "disconnected":
                    break
                browser.pump(0.1)
            print(json.dumps({"disconnected": link == "disconnected", "seconds": round(time.monotonic() - start, 2),
                              "link_text": browser.evaluate("document.getElementById('link').textContent")}), flush=True)
        return 0
    except Exception as error:  # Reported to the test, which prints it.
        print(f"dashboard-probe: {type(error).__name__}: {error}", file=sys.stderr)
        watcher.take(browser.events)
        print(f"dashboard-probe: errors so far {watcher.errors}, failed {watcher.failed}", file=sys.stderr)
        return 1
    finally:
        browser.close()


if __name__ == "__main__":
    # A test that stops this script with SIGTERM must not leave Chromium behind: unwind through
    # main's `finally`, which closes the browser.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
