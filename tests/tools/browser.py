"""Drives headless Chromium through the DevTools protocol over a pipe (no websocket
library, no driver download) for the browser tests of report.html and `cellnets serve`.

    browser.py CHROMIUM URL SHOTS_DIR STEPS_JSON [--offline] [--no-script]

Opens URL, waits for its load event, then runs each step of STEPS_JSON in order: a
JavaScript expression evaluated in the page until it is truthy (or `timeout` seconds
pass), then, if the step names one, a full-page screenshot in SHOTS_DIR. With --offline
the page has no network at all (file: URLs still load); with --no-script its own
scripts do not run (the steps still do), as in a viewer that blocks them. Prints JSON: the load time, each
step's value, the console errors and uncaught exceptions, and every URL requested.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, profile):
        to_browser_read, self.to_browser = os.pipe()
        self.from_browser, from_browser_write = os.pipe()

        def devtools_fds():
            # The DevTools pipe: Chromium reads commands on fd 3 and writes on fd 4. Moved
            # up first, since the pipes themselves may sit on fds 3 and 4.
            high_read = os.dup2(to_browser_read, 100)
            high_write = os.dup2(from_browser_write, 101)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-pipe", "--user-data-dir=" + profile,
             "--no-first-run", "--no-default-browser-check", "--window-size=1280,900",
             "about:blank"],
            preexec_fn=devtools_fds, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.next_id = 0
        self.buffer = b""
        self.events = []
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, params=None, timeout=30):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method, timeout):
        deadline = time.time() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(index)
            self.events.append(self._read_message(deadline))

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            return None
        return result["result"].get("value")

    def screenshot(self, path):
        metrics = self.send("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2400),
                "scale": 1}
        shot = self.send("Page.captureScreenshot",
                         {"format": "png", "captureBeyondViewport": True, "clip": clip})
        with open(path, "wb") as file:
            file.write(base64.b64decode(shot["data"]))

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main(chromium, url, shots, steps, offline, no_script):
    os.makedirs(shots, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(chromium, profile)
        try:
            targets = browser.send("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            browser.session = browser.send(
                "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
            )["sessionId"]
            for domain in ["Page", "Runtime", "Log", "Network"]:
                browser.send(domain + ".enable")
            if offline:
                browser.send("Network.emulateNetworkConditions", {
                    "offline": True, "latency": 0, "downloadThroughput": -1,
                    "uploadThroughput": -1})
            if no_script:
                browser.send("Emulation.setScriptExecutionDisabled", {"value": True})
            started = time.time()
            browser.send("Page.navigate", {"url": url})
            browser.wait_event("Page.loadEventFired", 60)
            load_seconds = time.time() - started
            results = []
            for step in steps:
                begun = time.time()
                value = None
                while time.time() - begun < step.get("timeout", 10):
                    value = browser.evaluate(step["wait"])
                    if value:
                        break
                    time.sleep(0.2)
                result = {"name": step["name"], "value": value,
                          "seconds": round(time.time() - begun, 3)}
                if step.get("shot"):
                    path = os.path.join(shots, step["shot"])
                    browser.screenshot(path)
                    result["shot"] = path
                results.append(result)
            browser.send("Runtime.evaluate", {"expression": "1"})
            errors, requests = [], []
            for event in browser.events:
                method, params = event.get("method"), event.get("params", {})
                if method == "Runtime.exceptionThrown":
                    details = params["exceptionDetails"]
                    errors.append(details.get("exception", {}).get("description")
                                  or details.get("text"))
                elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                    errors.append(" ".join(str(a.get("value", a.get("description")))
                                           for a in params["args"]))
                elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                    errors.append(params["entry"]["text"] + " " + params["entry"].get("url", ""))
                elif method == "Network.requestWillBeSent":
                    # data: URLs are inline content, not requests to anything.
                    if not params["request"]["url"].startswith("data:"):
                        requests.append(params["request"]["url"])
        finally:
            browser.close()
    json.dump({"load_seconds": round(load_seconds, 3), "steps": results,
               "console_errors": errors, "requests": requests}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]),
         "--offline" in sys.argv[5:], "--no-script" in sys.argv[5:])
