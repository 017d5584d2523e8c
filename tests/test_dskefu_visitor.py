"""Visitors on ds/kefu: bind, send, agent reply, end — in the guide's exact shapes."""

from tests.support import INT, TIME


def _agent(server, name):
    agent = server.create_agent(name)
    ws = server.ws()
    assert ws.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    return agent, ws


def test_visitor_round_trip(server):
    agent, agent_ws = _agent(server, "visitor-agent")
    kefu = str(agent["kefu_id"])
    visitor, other_tab = server.ws(), server.ws()
    for tab in (visitor, other_tab):
        bound = tab.request(
            {
                "action": "kefu_message_visitor_bind_fd",
                "data": {"bind_key": "visitor_123456"},
                "op_id": "b",
            }
        )
        assert bound == {
            "success": True,
            "message": "Bind key successfully",
            "data": None,
            "op_id": "b",
        }

    first_send = {
        "action": "kefu_message_visitor_send",
        "op_id": "v1",
        "data": {"visitor_id": "visitor_123456", "kefu_id": kefu, "content": "你好，我需要帮助"},
    }
    sent = visitor.request(first_send)
    assert sent == {
        "success": True,
        "message": "Visitor message sent successfully",
        "data": {"message_id": INT},
        "op_id": "v1",
    }
    assigned = agent_ws.recv()
    cid = assigned["conversation_id"]
    assert assigned == {
        "type": "push_message",
        "action": "kefu_conversation_assigned",
        "conversation_id": cid,
        "kefu_id": agent["kefu_id"],
        "user_id": None,
        "timestamp": INT,
        "visitor_id": "visitor_123456",
    }
    to_agent = {
        "type": "push_message",
        "action": "kefu_visitor_message",
        "visitor_id": "visitor_123456",
        "kefu_id": kefu,
        "message_id": sent["data"]["message_id"],
        "content": "你好，我需要帮助",
        "sender_type": 1,
        "created_at": TIME,
        "timestamp": INT,
        "conversation_id": cid,
    }
    assert agent_ws.recv() == to_agent
    assert other_tab.recv() == to_agent  # the visitor's other tab stays in step

    reply = agent_ws.request(
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": cid,
                "content": "您好，有什么可以帮您的吗？",
                "sender_type": 2,
            },
        }
    )
    assert reply["success"] is True
    expected = {
        "type": "push_message",
        "action": "kefu_visitor_message",
        "visitor_id": "visitor_123456",
        "kefu_id": kefu,
        "message_id": reply["data"]["message_id"],
        "content": "您好，有什么可以帮您的吗？",
        "sender_type": 2,
        "created_at": TIME,
        "timestamp": INT,
        "conversation_id": cid,
    }
    assert visitor.recv() == expected
    assert other_tab.recv() == expected

    # Visitors get text only (the guide's pushes carry no message_type or file_url): an
    # agent's image reaches them as its link, not as an empty message.
    image = agent_ws.request(
        {
            "action": "kefu_message_send",
            "data": {
                "conversation_id": cid,
                "content": "",
                "message_type": 2,
                "file_url": "https://cdn.example.com/map.png",
            },
        }
    )
    assert image["success"] is True, image
    pushed = {**expected, "message_id": image["data"]["message_id"]}
    pushed["content"] = "https://cdn.example.com/map.png"
    assert visitor.recv() == pushed
    assert other_tab.recv() == pushed
    # With a caption, the caption and the link below it (the caption alone hid the image).
    data = {"conversation_id": cid, "content": "Our shop", "message_type": 2}
    data["file_url"] = "https://cdn.example.com/shop.png"
    captioned = agent_ws.request({"action": "kefu_message_send", "data": data})
    assert captioned["success"] is True, captioned
    pushed = {**expected, "message_id": captioned["data"]["message_id"]}
    pushed["content"] = "Our shop\nhttps://cdn.example.com/shop.png"
    assert visitor.recv() == pushed
    assert other_tab.recv() == pushed

    # Same op_id again: same answer, nothing new stored or pushed.
    again = visitor.request(first_send)
    assert again == sent
    assert agent_ws.silent()

    ended = visitor.request(
        {
            "action": "kefu_message_visitor_end",
            "op_id": "e",
            "data": {"visitor_id": "visitor_123456", "kefu_id": kefu},
        }
    )
    assert ended == {
        "success": True,
        "message": "Visitor conversation ended successfully",
        "data": {},
        "op_id": "e",
    }
    end_push = {
        "type": "push_message",
        "action": "kefu_visitor_conversation_end",
        "visitor_id": "visitor_123456",
        "kefu_id": kefu,
        "sender_type": 1,
        "timestamp": INT,
        "conversation_id": cid,
    }
    assert agent_ws.recv() == end_push
    assert visitor.recv() == end_push
    assert other_tab.recv() == end_push
    for ws in (agent_ws, visitor, other_tab):
        ws.close()


def test_agent_ends_visitor_conversation(server):
    agent, agent_ws = _agent(server, "visitor-agent-2")
    visitor = server.ws()
    visitor.request({"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": "vis-2"}})
    visitor.request(
        {
            "action": "kefu_message_visitor_send",
            "data": {"visitor_id": "vis-2", "kefu_id": agent["kefu_id"], "content": "hello"},
        }
    )
    cid = agent_ws.recv()["conversation_id"]
    agent_ws.recv()  # the message
    done = agent_ws.request({"action": "kefu_message_end", "data": {"conversation_id": cid}})
    assert done["success"] is True
    assert agent_ws.recv()["action"] == "kefu_visitor_conversation_end"
    push = visitor.recv()
    assert (push["action"], push["sender_type"], push["conversation_id"]) == (
        "kefu_visitor_conversation_end",
        2,
        cid,
    )
    # A new message after the end opens a new conversation with the same agent.
    visitor.request(
        {
            "action": "kefu_message_visitor_send",
            "data": {"visitor_id": "vis-2", "kefu_id": agent["kefu_id"], "content": "me again"},
        }
    )
    assert agent_ws.recv()["conversation_id"] != cid


def test_visitor_errors(server):
    agent, _ = _agent(server, "visitor-agent-3")
    ws = server.ws()
    cases = [
        ({"visitor_id": "", "kefu_id": "1", "content": "x"}, "visitor_id is required"),
        ({"kefu_id": "1", "content": "x"}, "visitor_id is required"),
        ({"visitor_id": "v", "content": "x"}, "kefu_id is required"),
        (
            {"visitor_id": "v", "kefu_id": "abc", "content": "x"},
            "kefu_id must be a positive integer",
        ),
        ({"visitor_id": "v", "kefu_id": "999999", "content": "x"}, "Kefu not found"),
        ({"visitor_id": "v", "kefu_id": agent["kefu_id"]}, "content is required"),
        (
            {"visitor_id": "v" * 129, "kefu_id": 1, "content": "x"},
            "visitor_id is too long (max 128 characters)",
        ),
        ({"visitor_id": 5, "kefu_id": 1, "content": "x"}, "visitor_id must be a string"),
        (  # it was stored as text, its image dropped
            {"visitor_id": "v", "kefu_id": 1, "content": "x", "message_type": 2},
            "Visitors send text only (message_type 1, no file_url)",
        ),
        (
            {"visitor_id": "v", "kefu_id": 1, "content": "x", "file_url": "https://e.com/a.png"},
            "Visitors send text only (message_type 1, no file_url)",
        ),
    ]
    for data, message in cases:
        reply = ws.request({"action": "kefu_message_visitor_send", "data": data, "op_id": "x"})
        assert reply == {"success": False, "message": message, "op_id": "x"}, data
    never = ws.request(
        {
            "action": "kefu_message_visitor_end",
            "data": {"visitor_id": "nobody-here", "kefu_id": agent["kefu_id"]},
        }
    )
    assert never == {"success": False, "message": "Visitor conversation not found", "op_id": None}
    unbound = ws.request({"action": "kefu_message_visitor_bind_fd", "data": {}})
    assert unbound == {"success": False, "message": "bind_key is required", "op_id": None}
    assert ws.request({"action": "ping"})["success"] is True  # still usable


def test_a_disabled_agent_takes_no_new_visitor_messages(server):
    """An agent who left (their account disabled) cannot answer: the widget's page and
    new messages say "Kefu not found" instead of storing what nobody would read, and
    the visitor can still end the conversation they had."""
    agent = server.create_agent("visitor-agent-leaving")
    kefu = agent["kefu_id"]
    visitor = server.ws()
    data = {"visitor_id": "visitor-left", "kefu_id": kefu, "content": "hello"}
    send = {"action": "kefu_message_visitor_send", "op_id": "s1", "data": data}
    assert visitor.request(send)["success"] is True
    assert server.get(f"/visitor?kefu_id={kefu}").status_code == 200
    server.cli("kefu", "disable", "visitor-agent-leaving")

    again = {**send, "op_id": "s2", "data": {**data, "content": "anyone there?"}}
    refused = visitor.request(again)
    assert refused == {"success": False, "message": "Kefu not found", "op_id": "s2"}
    page = server.get(f"/visitor?kefu_id={kefu}")
    assert page.status_code == 404 and "Kefu not found" in page.text
    stored = server.sql(
        "SELECT m.content FROM message m JOIN conversation c ON c.id = m.conversation_id"
        " WHERE c.kefu_id = ?",
        kefu,
    )
    assert stored == [("hello",)]
    ended = visitor.request(
        {
            "action": "kefu_message_visitor_end",
            "data": {"visitor_id": "visitor-left", "kefu_id": kefu},
        }
    )
    assert ended["success"] is True, ended


def test_a_visitors_op_id_is_a_resend_only_to_the_same_agent(server):
    """The same text and op_id to another agent was answered with the first message's
    id, and nothing was stored or pushed: the message was lost. It is refused now. To
    the same agent it is a resend, even after that conversation ended (as a user's)."""
    first_agent, _ = _agent(server, "visitor-first-agent")
    second_agent, second_ws = _agent(server, "visitor-second-agent")
    ws = server.ws()

    def send(kefu_id):
        data = {"visitor_id": "two-agents", "kefu_id": kefu_id, "content": "你好，我需要帮助"}
        return ws.request({"action": "kefu_message_visitor_send", "data": data, "op_id": "u1"})

    first = send(first_agent["kefu_id"])
    assert first["success"]
    end = {"visitor_id": "two-agents", "kefu_id": first_agent["kefu_id"]}
    assert ws.request({"action": "kefu_message_visitor_end", "data": end})["success"]
    elsewhere = send(second_agent["kefu_id"])
    assert elsewhere["success"] is False
    assert elsewhere["message"].startswith("op_id was already used for another message")
    assert second_ws.silent()
    assert send(first_agent["kefu_id"]) == first  # the resend, answered as the first time
    assert server.sql("SELECT COUNT(*) FROM message WHERE op_id = ?", "u1") == [(1,)]
    assert ws.request({"action": "ping"})["success"] is True


def test_an_agent_logging_in_is_told_of_a_visitor_conversation_opened_while_offline(server):
    """A visitor names its agent, online or not. The assignment was announced to nobody
    then, and a ds/kefu agent has no other way to learn the conversation's id: its login
    now lists its open conversations after the reply, as the waiter's auth does."""
    agent = server.create_agent("visitor-offline-agent")
    visitor = server.ws()
    bind = {"action": "kefu_message_visitor_bind_fd", "data": {"bind_key": "came-at-night"}}
    assert visitor.request(bind)["success"]
    data = {"visitor_id": "came-at-night", "kefu_id": agent["kefu_id"], "content": "anyone?"}
    assert visitor.request({"action": "kefu_message_visitor_send", "data": data})["success"]
    ws = server.ws()
    login = ws.request({"action": "login", "data": {"token": agent["token"]}, "op_id": "in"})
    assert login["op_id"] == "in" and login["success"]  # the reply comes first
    told = ws.recv()
    assert told == {
        "type": "push_message",
        "action": "kefu_conversation_assigned",
        "conversation_id": INT,
        "kefu_id": agent["kefu_id"],
        "user_id": None,
        "timestamp": INT,
        "visitor_id": "came-at-night",
    }
    assert ws.silent()
    answer = {"conversation_id": told["conversation_id"], "content": "here now"}
    assert ws.request({"action": "kefu_message_send", "data": answer})["success"]
    assert visitor.recv()["content"] == "here now"
    again = server.ws()  # every login of the agent lists them; a second one too
    assert again.request({"action": "login", "data": {"token": agent["token"]}})["success"]
    assert again.recv()["conversation_id"] == told["conversation_id"]
