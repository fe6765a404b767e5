"""Drives the collector's web page in Debian's Chromium (headless, through
Playwright for Python; no browser is downloaded) against a real collector
fed by a real agent, and checks what a person would see.

usage: web_ui.py SCENARIO CONFIG_JSON

CONFIG_JSON (written by tests/tests/web_ui.rs) names the collector URL,
the `logpost` binary, the tailed files and, per scenario, tokens or the
expected size. Scenarios:

- search: a typed query shows exactly the lines `logpost query` returns;
  clicking a label adds its matcher and the results follow; a parse
  error is shown at its column and the page keeps working; the volume
  histogram's bars sum to a count_over_time over the same span, and
  dragging over it zooms; a metric query draws its series; the label
  browser builds a selector; live tail shows an appended line and pause
  holds the next one back; a bookmarked URL reopens the same search and
  the back button restores the previous one; the status view shows
  topics and a consumer group's lag.
- auth: with tokens configured the page asks for one; a wrong token is
  refused in words, a token without the read scope gets the 403 in words,
  the right one shows the results and live tail works with it.
- bulk: 100,000 results load and the page stays responsive; prints the
  longest main-thread task (a figure, not an assertion).

Prints one JSON object of figures on the last line; exits non-zero with a
message naming the first mismatch. Screenshots of each view are written
to $LOGPOST_UI_SCREENSHOTS when it is set (docs/ui.md uses them).
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("LOGPOST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = os.environ.get("LOGPOST_UI_SCREENSHOTS")
# Deadlines only catch hangs (shared, noisy CI machines): never a performance bound.
PATIENCE = 120
ANSI = re.compile(r"\x1b(?:\[[0-9;:?]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
ROW_CHARS = 2000  # what a collapsed row draws of a line (results.js)

figures = {}


def fail(msg):
    raise AssertionError(msg)


def wait(what, probe, timeout=PATIENCE):
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            fail(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)


def shot(page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


class Env:
    def __init__(self, cfg):
        self.cfg = cfg
        self.url = cfg["url"]

    def logpost(self, *args, token=None):
        env = dict(os.environ)
        env.pop("LOGPOST_TOKEN", None)
        if token:
            env["LOGPOST_TOKEN"] = token
        out = subprocess.run([self.cfg["logpost"], "--collector", self.url, *args],
                             capture_output=True, env=env, timeout=PATIENCE)
        if out.returncode not in (0, 1):
            fail(f"logpost {args} failed: {out.stderr.decode(errors='replace')}")
        return out.stdout

    def expected(self, query, limit=1000, token=None):
        """The lines `logpost query` prints for `query`, newest first, as the page draws them."""
        raw = self.logpost("query", query, "--since", "1h", "--direction", "backward",
                           "--limit", str(limit), "--output", "raw", token=token)
        lines = raw.decode("utf-8", errors="replace").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [ANSI.sub("", l)[:ROW_CHARS] for l in lines]

    def api(self, path, body=None, token=None):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=PATIENCE) as r:
            return json.loads(r.read() or b"{}")

    def append(self, name, line):
        with open(os.path.join(self.cfg["logs"], name), "a") as f:
            f.write(line + "\n")


def launch(p, **ctx):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, **ctx)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Refused requests (400s of bad queries, 401s before a token) are
    # logged by the browser itself; uncaught exceptions and anything the
    # page logs are errors.
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and "WebSocket" not in m.text and errors.append(m.text))
    return browser, context, page, errors


def summary(page):
    return page.eval_on_selector("#summary", "e => ({...e.dataset, text: e.textContent})")


def run_query(page, query):
    page.fill("#q", query)
    page.press("#q", "Enter")
    return done(page)


def done(page):
    return wait("the search to finish", lambda: (lambda s: s if s.get("done") or s.get("failed") else None)(summary(page)))


def frames(page):
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


ROWS_JS = """() => [...document.querySelectorAll('#results .vl-row')].map(r => [
  Number(r.dataset.index), r.querySelector('.line').textContent])"""


def all_rows(page):
    """Every result line, in order, scrolling the virtualised list through."""
    total = int(summary(page).get("count", "0"))
    seen = {}
    page.evaluate("() => { document.getElementById('results').scrollTop = 0; }")
    frames(page)
    for _ in range(total + 10):
        for i, text in page.evaluate(ROWS_JS):
            seen[i] = text
        if len(seen) >= total:
            break
        page.evaluate("() => { const r = document.getElementById('results'); r.scrollTop += r.clientHeight; }")
        frames(page)
    if sorted(seen) != list(range(total)):
        fail(f"rows drawn: {len(seen)} of {total}")
    page.evaluate("() => { document.getElementById('results').scrollTop = 0; }")
    frames(page)
    return [seen[i] for i in range(total)]


def same_lines(page, env, query, token=None):
    want = env.expected(query, token=token)
    got = all_rows(page)
    if got != want:
        diff = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        fail(f"{query}: the page shows {len(got)} lines, logpost query {len(want)}; first difference at {diff}:\n"
             f"  page:    {got[diff:diff + 1]!r}\n  logpost: {want[diff:diff + 1]!r}")
    return got


def page_figures(page):
    """Bytes transferred for the page and its first paint, from the browser's own timings."""
    return page.evaluate("""() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const res = performance.getEntriesByType('resource').filter(r => new URL(r.name).pathname.startsWith('/ui/'));
      const fcp = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint');
      return {
        transferred_bytes: nav.transferSize + res.reduce((a, r) => a + r.transferSize, 0),
        body_bytes_compressed: nav.encodedBodySize + res.reduce((a, r) => a + r.encodedBodySize, 0),
        body_bytes: nav.decodedBodySize + res.reduce((a, r) => a + r.decodedBodySize, 0),
        files: 1 + res.length,
        first_contentful_paint_ms: fcp ? Math.round(fcp.startTime) : null,
        dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
      };
    }""")


def search(env):
    with sync_playwright() as p:
        browser, context, page, errors = launch(p)
        page.goto(env.url + "/")
        page.wait_for_selector("#q")
        figures["page"] = page_figures(page)
        # An empty query opens the label browser; close it for the pictures.
        page.wait_for_selector("#browser .lb-name")
        page.click("#labels-btn")

        # A query typed into the box: exactly `logpost query`'s lines, newest first.
        page.keyboard.press("/")
        if not page.evaluate("() => document.activeElement.id === 'q'"):
            fail("the / shortcut does not focus the query box")
        q1 = '{topic="app"} |= "ERROR"'
        s = run_query(page, q1)
        if s.get("failed"):
            fail(f"{q1}: {page.text_content('#error')}")
        figures["first_results_ms"] = int(s["firstMs"])
        lines = same_lines(page, env, q1)
        if not lines or not all("ERROR" in l for l in lines):
            fail(f"{q1}: unexpected lines {lines[:3]}")
        first = page.locator('#results .vl-row[data-index="0"]')
        if not re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", first.locator(".ts").text_content()):
            fail("a row has no time")
        if first.locator('.chip[data-label="topic"][data-value="app"]').count() != 1:
            fail("a row does not show its labels")
        shot(page, "search")
        url_q1 = page.url

        # Clicking a label adds its matcher; the results follow.
        chip = first.locator('.chip[data-label="source"]')
        source = chip.get_attribute("data-value")
        chip.click()
        page.click(".menu .menu-eq")
        s = done(page)
        q2 = page.input_value("#q")
        if q2 != f'{{topic="app", source="{source}"}} |= "ERROR"':
            fail(f"clicking source={source} made the query {q2!r}")
        lines2 = same_lines(page, env, q2)
        if not 0 < len(lines2) < len(lines):
            fail(f"filtering on source={source} did not narrow the results ({len(lines2)} of {len(lines)})")
        url_q2 = page.url

        # ... and != excludes it.
        page.locator('#results .vl-row[data-index="0"] .chip[data-label="level"]').click()
        page.click(".menu .menu-ne")
        done(page)
        q3 = page.input_value("#q")
        if 'level!="ERROR"' not in q3:
            fail(f"excluding level made the query {q3!r}")
        if int(summary(page).get("count", "-1")) != 0:
            fail(f"{q3} should match nothing")

        # A row expands to every header and its offset; ANSI and long lines render safely.
        run_query(page, '{topic="app"} |= "colour"')
        row = page.locator('#results .vl-row[data-index="0"]')
        if row.locator(".line span.a-f1").count() < 1 or "\x1b" in row.locator(".line").text_content():
            fail("an ANSI-coloured line is not drawn in colour without its escapes")
        row.locator(".ts").click()
        detail = page.locator("#results .detail").first
        detail.wait_for()
        text = detail.text_content()
        for want in ("offset", "partition", "header level", "header path", "header source"):
            if want not in text:
                fail(f"the expanded row lacks {want!r}: {text[:300]}")
        run_query(page, '{topic="app"} |= "long-line"')
        long_row = page.locator('#results .vl-row[data-index="0"]')
        if len(long_row.locator(".line").text_content()) != ROW_CHARS:
            fail("a long line's row is not cut to what can show")
        long_row.locator(".ts").click()
        page.locator("#results .detail .more").click()
        full = page.locator("#results .detail .full").text_content()
        if len(full) < 150_000:
            fail(f"the whole long line is not shown on demand ({len(full)} characters)")

        # A parse error is shown at its position, and nothing breaks.
        s = run_query(page, '{topic="app"')
        if not s.get("failed"):
            fail("a bad query did not fail")
        err = page.text_content("#error")
        if "parse error at line 1, col" not in err or page.locator("#error .err-caret").count() != 1:
            fail(f"the parse error is not shown with its position: {err!r}")
        caret = page.text_content("#error .err-caret").split("\n")
        col = int(re.search(r"col (\d+)", err).group(1))
        if caret[1].index("^") != col - 1:
            fail(f"caret at {caret[1].index('^')}, error at col {col}")
        shot(page, "parse-error")
        s = run_query(page, q1)
        if s.get("failed") or int(s["count"]) != len(lines) or page.is_visible("#error"):
            fail("the page does not recover after a parse error")

        # Back: the previous search again; a bookmark reopens a search.
        page.go_back()
        wait("back to the parse error", lambda: page.input_value("#q") == '{topic="app"')
        page.go_forward()
        wait("forward again", lambda: page.input_value("#q") == q1)
        done(page)
        other = context.new_page()
        other.goto(url_q2)
        s = done(other)
        if other.input_value("#q") != q2:
            fail(f"the bookmark {url_q2} opened {other.input_value('#q')!r}")
        if all_rows(other) != lines2:
            fail("the bookmark does not show the same lines")
        other.close()
        if "q=" not in url_q1:
            fail(f"the URL does not hold the query: {url_q1}")

        # The volume histogram sums to count_over_time over the same span; a drag zooms.
        to = int(time.time() * 1000) + 60_000
        frm = to - 3_600_000
        q = '{topic="app"}'
        page.goto(f"{env.url}/?" + urllib.parse.urlencode({"q": q, "from": frm, "to": to, "by": "source"}))
        done(page)
        page.wait_for_selector("#volume svg[data-total]")
        bars = page.eval_on_selector_all("#volume rect.bar", "rs => rs.map(r => Number(r.dataset.count))")
        span = page.eval_on_selector("#volume svg", "s => [Number(s.dataset.from), Number(s.dataset.to)]")
        if span != [frm, to]:
            fail(f"the histogram covers {span}, the range is {[frm, to]}")
        count = env.api("/loki/api/v1/query?" + urllib.parse.urlencode(
            {"query": f"sum(count_over_time({q}[{(to - frm) // 1000}s]))", "time": f"{to}000000"}))
        want = int(float(count["data"]["result"][0]["value"][1]))
        if sum(bars) != want:
            fail(f"the histogram's bars sum to {sum(bars)}, count_over_time gives {want}")
        figures["histogram_total"] = want
        legend = page.text_content("#volume-legend")
        if "web" not in legend or "worker" not in legend:
            fail(f"the histogram is not split by source: {legend!r}")
        shot(page, "histogram")
        zoomed_in = lambda: "from=" in page.url and f"from={frm}" not in page.url
        # The histogram may be redrawn (results still arriving) between
        # measuring it and the drag: a drag that met no histogram is made
        # again on the one drawn now, as a user would.
        for attempt in range(5):
            page.wait_for_selector("#volume svg[data-total]")
            box = page.locator("#volume svg").bounding_box()
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] * 0.5, y)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=5)
            page.mouse.move(box["x"] + box["width"] * 0.98, y, steps=5)
            page.mouse.up()
            deadline = time.monotonic() + 15
            while not zoomed_in() and time.monotonic() < deadline:
                time.sleep(0.05)
            if zoomed_in():
                break
        wait("the zoom", zoomed_in)
        zoomed = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
        zf, zt = int(zoomed["from"][0]), int(zoomed["to"][0])
        if not frm < zf < zt <= to:
            fail(f"dragging zoomed to {zf}..{zt}, outside {frm}..{to}")
        done(page)

        # A metric query draws its series (over the last hour again).
        page.select_option("#range", "now-1h")
        done(page)
        run_query(page, 'sum by (level) (count_over_time({topic="app"}[1m]))')
        page.wait_for_selector("#metric svg polyline", state="attached")
        names = sorted(page.eval_on_selector_all("#metric polyline", "ps => ps.map(p => p.dataset.series)"))
        if names != sorted(['level="DEBUG"', 'level="ERROR"', 'level="INFO"', 'level="WARN"']):
            fail(f"the metric chart's series: {names}")
        shot(page, "metric")

        # The label browser builds a selector.
        page.fill("#q", '{topic="app"} |= "handled"')
        if page.is_hidden("#browser"):
            page.click("#labels-btn")
        page.click('.lb-name[data-name="level"]')
        page.click('.lb-value[data-value="WARN"]')
        page.click('.lb-name[data-name="topic"]')
        page.click('.lb-value[data-value="app"]')
        shot(page, "labels")
        page.click("#lb-use")
        s = done(page)
        q4 = page.input_value("#q")
        if q4 != '{level="WARN", topic="app"} |= "handled"':
            fail(f"the label browser made {q4!r}")
        same_lines(page, env, q4)

        # Live tail: an appended line shows up; pause holds the next one back.
        page.goto(f"{env.url}/?" + urllib.parse.urlencode({"q": '{topic="app", source="web"}', "live": "1"}))
        wait("the tail to connect", lambda: page.text_content("#live-state") == "following")
        marker = f"INFO live-marker-{time.time_ns()} handled"
        env.append("web.log", marker)
        t0 = time.monotonic()
        wait("the appended line on the page", lambda: marker in page.text_content("#results"))
        figures["live_line_seconds"] = round(time.monotonic() - t0, 2)
        shot(page, "live")
        page.click("#pause")
        held = marker.replace("marker", "held")
        env.append("web.log", held)
        wait("the held line to be counted", lambda: page.get_attribute("#newer", "data-count") == "1")
        if held in page.text_content("#results"):
            fail("a line appended while paused is shown")
        page.click("#pause")
        wait("the held line after resume", lambda: held in page.text_content("#results"))
        rows = page.evaluate(ROWS_JS)
        order = [t for _, t in sorted(rows)]
        if order.index(next(t for t in order if held in t)) > order.index(next(t for t in order if marker in t)):
            fail("live lines are not newest first")

        # The status view: topics and a consumer group's lag.
        member = env.api("/v1/groups/web-ui-test/join", {"topics": ["app"]})
        env.api("/v1/groups/web-ui-test/commit", {"member_id": member["member_id"], "generation": member["generation"],
                                                  "offsets": [{"topic": "app", "partition": 0, "offset": 10}]})
        hw = env.api("/v1/topics/app")["partitions"][0]["high_watermark"]
        page.click("#tab-status")
        page.wait_for_selector('#topics tr[data-topic="app"]')
        page.wait_for_selector('#groups tr[data-group="web-ui-test"]')
        lag = page.text_content('#groups tr[data-group="web-ui-test"] td:last-child').replace(",", "")
        if int(lag) != hw - 10:
            fail(f"the status view shows lag {lag}, the partition's end is {hw} and the group committed 10")
        if "view=status" not in page.url:
            fail("the status view is not in the URL")
        shot(page, "status")

        # Narrow and dark.
        page.set_viewport_size({"width": 360, "height": 740})
        page.goto(url_q1)
        done(page)
        width = page.evaluate("() => document.documentElement.scrollWidth")
        if width > 360:
            fail(f"at 360 px the page is {width} px wide")
        shot(page, "narrow")
        dark = browser.new_page(color_scheme="dark", viewport={"width": 1280, "height": 860})
        dark.goto(url_q1)
        done(dark)
        bg = dark.evaluate("() => getComputedStyle(document.body).backgroundColor")
        if bg == "rgb(255, 255, 255)":
            fail("dark mode keeps a white page")
        shot(dark, "dark")
        if errors:
            fail(f"errors in the page: {errors}")
        browser.close()


def auth(env):
    cfg = env.cfg
    q = '{topic="app"}'
    with sync_playwright() as p:
        browser, context, page, errors = launch(p)
        page.goto(f"{env.url}/?" + urllib.parse.urlencode({"q": q}))
        page.wait_for_selector("#token-dialog[open]")
        if "token" not in page.text_content("#token-why"):
            fail("the token dialog does not say why")
        shot(page, "token")
        page.fill("#token-input", "not-the-token-0123456789")
        page.click("#token-ok")
        wait("the wrong token's refusal", lambda: "refused" in page.text_content("#token-why")
             and page.is_visible("#token-dialog"))
        if "unknown token" not in page.text_content("#token-why"):
            fail(f"a wrong token is not refused in words: {page.text_content('#token-why')!r}")
        # A token without the read scope: the 403 in words.
        page.fill("#token-input", cfg["ingest_token"])
        page.click("#token-ok")
        s = done(page)
        err = page.text_content("#error")
        if not s.get("failed") or "403" not in err or "read" not in err:
            fail(f"a token without the read scope is not explained: {err!r}")
        page.click("#forget")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", cfg["read_token"])
        page.click("#token-ok")
        s = done(page)
        if s.get("failed"):
            fail(f"the right token did not work: {page.text_content('#error')}")
        same_lines(page, env, q, token=cfg["read_token"])
        if page.evaluate("() => sessionStorage.getItem('logpost.token')") != cfg["read_token"]:
            fail("the token is not kept for the tab's session")
        if page.evaluate("() => localStorage.getItem('logpost.token')"):
            fail("the token outlives the tab")
        # A reload keeps it (same tab); live tail carries it over the WebSocket.
        page.goto(f"{env.url}/?" + urllib.parse.urlencode({"q": q, "live": "1"}))
        wait("the tail to connect", lambda: page.text_content("#live-state") == "following")
        if page.is_visible("#token-dialog"):
            fail("the token was asked for again in the same tab")
        marker = f"INFO token-tail-{time.time_ns()}"
        env.append("web.log", marker)
        wait("the appended line through an authenticated tail", lambda: marker in page.text_content("#results"))
        # A new tab asks again.
        fresh = browser.new_context().new_page()
        fresh.goto(f"{env.url}/?" + urllib.parse.urlencode({"q": q}))
        fresh.wait_for_selector("#token-dialog[open]")
        if errors:
            fail(f"errors in the page: {errors}")
        browser.close()


def bulk(env):
    n = env.cfg["lines"]
    q = '{topic="bulk"}'
    want = env.expected(q, limit=n)
    if len(want) != n:
        fail(f"logpost query prints {len(want)} lines of {n}")
    newest, oldest = want[0], want[-1]
    with sync_playwright() as p:
        browser, context, page, errors = launch(p)
        page.add_init_script("""
          window.__longtasks = [];
          new PerformanceObserver(l => { for (const e of l.getEntries()) window.__longtasks.push(e.duration); })
            .observe({ type: 'longtask', buffered: true });
        """)
        t0 = time.monotonic()
        page.goto(f"{env.url}/?" + urllib.parse.urlencode({"q": q, "limit": n, "by": ""}))
        s = wait("100,000 lines", lambda: (lambda s: s if s.get("done") or s.get("failed") else None)(summary(page)),
                 timeout=300)
        loaded = time.monotonic() - t0
        if s.get("failed") or int(s["count"]) != n:
            fail(f"loaded {s}")
        # Responsive: a row expands and the list scrolls to its end at once.
        expand_ms = page.evaluate("""async () => {
          const t = performance.now();
          document.querySelector('#results .vl-row[data-index="0"]').click();
          await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
          return performance.now() - t; }""")
        page.evaluate("() => { const r = document.getElementById('results'); r.scrollTop = r.scrollHeight; }")
        frames(page)
        rows = dict(page.evaluate(ROWS_JS))
        if rows.get(n - 1) != oldest:
            fail(f"the last row is {rows.get(n - 1)!r}, the oldest line {oldest!r}")
        page.evaluate("() => { document.getElementById('results').scrollTop = 0; }")
        frames(page)
        if dict(page.evaluate(ROWS_JS)).get(0) != newest:
            fail("the first row is not the newest line")
        scroll_ms = page.evaluate("""async () => {
          const r = document.getElementById('results');
          const t = performance.now();
          for (let i = 0; i < 20; i++) {
            r.scrollTop += r.scrollHeight / 25;
            await new Promise(f => requestAnimationFrame(f));
          }
          return (performance.now() - t) / 20; }""")
        tasks = page.evaluate("() => window.__longtasks")
        figures.update({
            "lines": n,
            "first_results_ms": int(s["firstMs"]),
            "all_results_ms": int(s["allMs"]),
            "page_load_to_done_s": round(loaded, 2),
            "longest_task_ms": round(max(tasks, default=0)),
            "long_tasks": len(tasks),
            "long_tasks_total_ms": round(sum(tasks)),
            "expand_row_ms": round(expand_ms, 1),
            "scroll_frame_ms": round(scroll_ms, 1),
            "js_heap_mb": round(page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : 0") / 2**20, 1),
        })
        shot(page, "bulk")
        if errors:
            fail(f"errors in the page: {errors}")
        browser.close()


def main():
    scenario, cfg = sys.argv[1], json.loads(sys.argv[2])
    env = Env(cfg)
    {"search": search, "auth": auth, "bulk": bulk}[scenario](env)
    print(json.dumps({"scenario": scenario, **figures}))


if __name__ == "__main__":
    main()
