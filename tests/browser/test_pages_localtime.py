"""Times in the reader's own time zone and language (static/localtime.js): "HH:MM" today,
"Yesterday HH:MM", a date with the time before that, the whole date in the title; on the
page as loaded and on what the live channel and the composer add. Without scripts, the
server's UTC time stays."""

import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from tests.browser.conftest import sign_in_agent, wait_live

DESK_ZONE, CHAT_ZONE = "Asia/Shanghai", "America/New_York"  # UTC+8, UTC-5/-4


def check(time, zone: str) -> None:
    """A <time> shows its datetime as it is in ``zone`` (en-GB: 24-hour clock)."""
    iso = time.get_attribute("datetime")
    at = datetime.fromisoformat(iso).astimezone(ZoneInfo(zone))
    days = (datetime.now(ZoneInfo(zone)).date() - at.date()).days
    shown, title = time.text_content(), time.get_attribute("title")
    if days == 0:
        assert shown == f"{at:%H:%M}", (iso, shown)
    elif days == 1:
        assert shown == f"Yesterday {at:%H:%M}", (iso, shown)
    else:  # "3 Dec, 14:03": the day and the time
        assert f"{at.day} " in shown and shown.endswith(f"{at:%H:%M}"), (iso, shown)
        assert "Yesterday" not in shown
    assert f"{at.day} {at:%B} {at.year}" in title and f"{at:%H:%M}" in title, (iso, title)


def stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def test_times_are_local_with_yesterday_and_dates(kefu, new_page):
    kefu.create_agent("tia", password="tia-pass-1")
    desk = new_page(timezone_id=DESK_ZONE, locale="en-GB")
    sign_in_agent(desk, kefu, "tia", "tia-pass-1")
    chat = new_page(390, 780, timezone_id=CHAT_ZONE, locale="en-GB")
    chat.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-tz", name="Zoe")))
    box = chat.locator("form[data-composer] textarea")
    for text in ("three days ago", "yesterday", "today"):
        box.fill(text)
        box.press("Enter")
        expect(chat.locator(".msg.mine").last).to_contain_text(text)
    wait_live(chat)
    conv_id = int(chat.locator("#conversation").get_attribute("data-conv"))
    now = datetime.now(UTC)
    with sqlite3.connect(str(kefu.workdir / "kefu.db")) as db:
        for text, at in (
            ("three days ago", now - timedelta(days=3)),
            ("yesterday", now - timedelta(days=1)),
        ):
            db.execute(
                "UPDATE message SET created_at = ? WHERE conversation_id = ? AND content = ?",
                (stamp(at), conv_id, text),
            )

    chat.reload()
    times = chat.locator(".msg time")
    expect(times).to_have_count(3)
    for n in range(3):
        check(times.nth(n), CHAT_ZONE)
    assert times.nth(0).text_content() != times.nth(0).get_attribute("datetime")[11:16]
    assert times.nth(1).text_content().startswith("Yesterday ")

    desk.reload()
    row = desk.locator("#open-list .conv-row", has_text="Zoe")
    check(row.locator("time"), DESK_ZONE)  # the row's last activity: today
    row.click()
    desk_times = desk.locator(".thread .msg time")
    expect(desk_times).to_have_count(3)
    for n in range(3):
        check(desk_times.nth(n), DESK_ZONE)
    # The same instant, another zone: the chat and the desk show different clocks.
    assert desk_times.nth(2).text_content() != times.nth(2).text_content()

    # What arrives later: the agent's reply (the composer's answer on the desk, a push on
    # the chat), and a push of the customer's message on the desk.
    reply = desk.locator("form[data-composer] textarea")
    reply.fill("Hello Zoe")
    reply.press("Enter")
    expect(chat.locator(".msg.theirs")).to_have_count(1)
    check(chat.locator(".msg.theirs time"), CHAT_ZONE)
    check(desk.locator(".msg.mine time"), DESK_ZONE)
    box.fill("one more")
    box.press("Enter")
    expect(desk.locator(".thread .msg")).to_have_count(5)
    check(desk.locator(".thread .msg").last.locator("time"), DESK_ZONE)
    check(desk.locator("#open-list .conv-row time"), DESK_ZONE)

    # Without scripts: the server's UTC time, with the UTC date in the title.
    plain = new_page(timezone_id=CHAT_ZONE, java_script_enabled=False)
    plain.goto(kefu.url("/chat?token=" + kefu.host_jwt("shopper-tz")))
    first = plain.locator(".msg time").first
    iso = first.get_attribute("datetime")
    assert first.text_content() == iso[11:16]
    assert first.get_attribute("title") == f"{iso[:10]} {iso[11:16]} UTC"
