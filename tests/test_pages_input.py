"""The pages against a live server: page views give their database connections back."""

import requests

from tests.support import Server


def test_page_views_give_their_connections_back(tmp_path):
    """Each view of the visitor page used to keep a pooled connection (its agent's
    account was read lazily, outside any ``db.read()``, so the request's greenlet took a
    connection that nothing returned): with a pool of two, the third view waited the
    pool's 30 s and failed. Now every view, and the request after them, is answered."""
    server = Server(tmp_path, db_pool_size=2).start()
    try:
        kefu_id = server.create_agent("eve")["kefu_id"]
        for _ in range(6):
            page = requests.get(server.url("/visitor"), params={"kefu_id": kefu_id}, timeout=5)
            assert page.status_code == 200 and "eve" in page.text
        assert server.get("/api/kefu/message/getConversation").status_code == 401
    finally:
        server.stop()
    assert "Exception on" not in server.log()
