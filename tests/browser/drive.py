"""Drives Debian's headless Chromium through a shop's pages for tests/browser.rs
and prints what the browser saw, as one JSON object.

    drive.py <chromium> <hookwire origin> <page origin> <other origin>

The page origin (http://localhost:<port>) is the shop: hookwire lists it in
cors-origins. The other origin (http://127.0.0.1:<port>) is not listed, and
hosts the offer a click is redirected to. Every wait is bounded.
"""

import json
import sys
import tempfile

from playwright.sync_api import sync_playwright

chromium, hookwire, shop, other = sys.argv[1:5]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

seen = {}


def remember(request):
    """The Cookie header of each request to hookwire, by path."""
    if request.url.startswith(hookwire):
        path = request.url[len(hookwire):].split("?")[0]
        seen.setdefault(path, []).append(
            {"method": request.method, "cookie": request.all_headers().get("cookie")}
        )


def uid_cookies(context):
    return [
        c for c in context.cookies() if c["name"] == "uid" and c["domain"] == "localhost"
    ]


with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
    context = p.chromium.launch_persistent_context(
        profile, executable_path=chromium, headless=True, args=FLAGS
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("request", remember)
    out = {}

    # The thank-you page's pixel.
    page.goto(f"{shop}/thanks.html")
    page.wait_for_function("document.getElementById('pixel').complete")
    out["pixel_width"] = page.evaluate("document.getElementById('pixel').naturalWidth")
    out["cookies_after_pixel"] = uid_cookies(context)

    # A credentialed POST from the shop's origin (JSON: preflighted).
    out["fetch"] = page.evaluate(
        """async (url) => {
            const r = await fetch(url, {method: "POST", credentials: "include",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({order: "A-17", sum: 12.5})});
            return {status: r.status, body: await r.json()};
        }""",
        f"{hookwire}/shop/order",
    )
    # sendBeacon: JSON as text/plain;charset=UTF-8, cookies included.
    out["beacon"] = page.evaluate(
        """(url) => navigator.sendBeacon(url, JSON.stringify({event: "leave", page: "thanks"}))""",
        f"{hookwire}/shop/beacon",
    )
    page.wait_for_timeout(300)

    # The same credentialed POST from an origin hookwire does not list.
    page.goto(f"{other}/other.html")
    out["other_fetch"] = page.evaluate(
        """async (url) => {
            try {
                const r = await fetch(url, {method: "POST", credentials: "include",
                    headers: {"Content-Type": "application/json"}, body: "{}"});
                return {status: r.status};
            } catch (e) {
                return {blocked: String(e)};
            }
        }""",
        f"{hookwire}/shop/order",
    )

    # The tracked click: to the offer, with the event id filled in.
    page.goto(f"{shop}/thanks.html")
    with page.expect_navigation(url=f"{other}/offer**"):
        page.click("#click")
    out["landed"] = page.url
    out["offer_text"] = page.inner_text("body")
    out["cookies_at_end"] = uid_cookies(context)
    out["requests"] = seen
    context.close()

print(json.dumps(out))
