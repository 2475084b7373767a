"""Every path, /mcp and the web's alike, behind one gate: Host check, exact Origin match, token or session
cookie, body cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx2
import pytest
from web_helpers import TOKEN, LiveServer

from glmtts_mcp.asgi.names import ServerNames
from glmtts_mcp.web.security import SESSION_COOKIE, LoginThrottle

AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_token_is_required_on_every_new_path(token_server: LiveServer) -> None:
    url = token_server.url
    for method, path in (
        ("GET", "/api/voices"),
        ("GET", "/api/cache/stats"),
        ("GET", "/docs"),
        ("GET", "/openapi.json"),
        ("GET", "/static/app.js"),
        ("POST", "/api/tts"),
        ("GET", "/v1/audio/voices"),
        ("POST", "/v1/audio/speech"),
    ):
        response = httpx2.request(method, url + path, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert "GLMTTS_MCP_TOKEN" in httpx2.get(url + "/api/voices").json()["error"]
    assert httpx2.post(url + "/v1/audio/speech", json={}).json()["error"]["code"] == "invalid_api_key"
    assert httpx2.post(url + "/mcp", json={}).status_code == 401
    assert httpx2.get(url + "/api/voices", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx2.get(url + "/api/voices", headers=AUTH).status_code == 200
    assert httpx2.get(url + "/docs", headers=AUTH).status_code == 200


def test_browser_is_sent_to_sign_in(token_server: LiveServer) -> None:
    page = httpx2.get(token_server.url + "/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    form = httpx2.get(token_server.url + "/login")
    assert form.status_code == 200 and 'name="token"' in form.text


def _session_cookie(response: httpx2.Response) -> str:
    header = response.headers["set-cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header.replace("Strict", "strict") and "Path=/" in header
    assert TOKEN not in header  # the cookie is derived from the token, never the token itself
    return header.split(";", 1)[0].split("=", 1)[1]


def test_one_time_link_sets_the_session_cookie(tmp_path, tiny_checkpoint) -> None:
    from web_helpers import live_server, make_web_app

    app = make_web_app(tmp_path, tiny_checkpoint, token=TOKEN)
    try:
        with live_server(app) as live:
            entry = live.service.entry_url()
            assert "/login?code=" in entry and TOKEN not in entry
            first = httpx2.get(entry)
            assert first.status_code == 303 and first.headers["location"] == "/"
            cookie = _session_cookie(first)
            cookies = {SESSION_COOKIE: cookie}
            assert httpx2.get(live.url + "/api/voices", cookies=cookies).status_code == 200
            assert httpx2.get(live.url + "/", cookies=cookies).status_code == 200
            again = httpx2.get(entry)
            assert again.status_code == 401 and "already used" in again.text  # one time only
            assert live.service.entry_url() == live.url + "/"
            assert httpx2.get(live.url + "/api/voices", cookies={SESSION_COOKIE: "forged"}).status_code == 401
    finally:
        app.close()


def test_sign_in_with_the_token(token_server: LiveServer) -> None:
    origin = {"origin": token_server.url}
    wrong = httpx2.post(token_server.url + "/login", data={"token": "nope"}, headers=origin)
    assert wrong.status_code == 401 and "not this server" in wrong.text
    right = httpx2.post(token_server.url + "/login", data={"token": TOKEN}, headers=origin)
    assert right.status_code == 303
    cookie = _session_cookie(right)
    assert httpx2.get(token_server.url + "/api/cache/stats", cookies={SESSION_COOKIE: cookie}).status_code == 200


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.url, timeout=60) as c:
        yield c


def test_foreign_origin_cannot_change_state(
    server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    files = {"audio": ("clip.wav", clip_bytes(410.0), "audio/wav")}
    evil = {"origin": "http://evil.example"}
    refused = client.post("/api/voices", files=files, data={"transcript": "hi", "name": "csrf"}, headers=evil)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert client.get("/api/voices", params={"query": "csrf"}).json()["voices"] == []  # nothing was stored
    assert (
        client.post(
            "/api/voices", files=files, data={"transcript": "hi", "name": "csrf"}, headers={"origin": "null"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/api/voices",
            files=files,
            data={"transcript": "hi", "name": "csrf"},
            headers={"sec-fetch-site": "cross-site"},
        ).status_code
        == 403
    )
    for method in ("PATCH", "DELETE"):
        assert client.request(method, "/api/voices/x", json={"name": "y"}, headers=evil).status_code == 403
    assert client.post("/v1/audio/speech", json={}, headers=evil).status_code == 403
    same = client.post(
        "/api/voices", files=files, data={"transcript": "hi", "name": "csrf"}, headers={"origin": server.url}
    )
    assert same.status_code == 201  # the page's own origin
    assert client.get("/api/voices", headers=evil).status_code == 200  # reading is no state change


def test_get_never_changes_state(client: httpx2.Client) -> None:
    assert client.get("/api/tts").status_code == 405
    assert client.get("/v1/audio/speech").status_code == 405
    schema = client.get("/openapi.json").json()
    gets = {path for path, ops in schema["paths"].items() if "get" in ops}
    assert gets == {
        "/api/voices",
        "/api/voices/{voice}",
        "/api/voices/{voice}/audio",
        "/api/voices/{voice}/export",
        "/api/cache/stats",
        "/api/pronunciations",
        "/api/voices/{voice}/pronunciations",
        "/v1/audio/voices",
        "/health",  # the GLM-TTS-Enhanced contract's reads (seed_api.py)
        "/api/tts/progress/{task_id}",
        "/api/gpu/status",
        "/api/outputs/{output_id}",  # a narrated script's files (scripts_api.py)
    }


def test_foreign_host_is_refused(client: httpx2.Client) -> None:
    response = client.get("/api/voices", headers={"host": "evil.example:8765"})
    assert response.status_code == 421 and "--allowed-host" in response.json()["error"]


def test_chunked_upload_over_the_cap_is_413(server: LiveServer, client: httpx2.Client) -> None:
    limit = server.app.settings.max_upload_bytes

    def body() -> Iterator[bytes]:  # no content-length: the cap applies while reading
        yield b'--x\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        for _ in range(limit // 65536 + 4):
            yield b"\0" * 65536

    response = client.post("/api/voices", content=body(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and "upload limit" in response.json()["error"]


PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def test_origin_must_match_exactly(server: LiveServer, client: httpx2.Client) -> None:
    """Another port on the same loopback name, and an origin that only starts like ours, are foreign."""
    port = int(server.url.rsplit(":", 1)[1])
    foreign = (
        f"http://127.0.0.1:{port + 1}",
        f"http://localhost:{port + 1}",
        f"http://127.0.0.1:{port}.evil.example",
        f"https://127.0.0.1:{port}",
        "http://127.0.0.1",
        f"http://127.0.0.1:{port}/path",
    )
    for origin in foreign:
        headers = {"origin": origin}
        refused = client.post("/mcp", json=PING, headers={**MCP_HEADERS, **headers})
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"], (origin, refused.text)
        assert client.get("/mcp", headers={**MCP_HEADERS, **headers}).status_code == 403, origin
        assert client.patch("/api/voices/x", json={"name": "y"}, headers=headers).status_code == 403, origin
    for own in (server.url, f"http://localhost:{port}", f"HTTP://LocalHost:{port}"):
        accepted = client.post("/mcp", json=PING, headers={**MCP_HEADERS, "origin": own})
        assert accepted.status_code not in (401, 403, 421), (own, accepted.text)
        assert client.patch("/api/voices/none", json={"name": "y"}, headers={"origin": own}).status_code == 404, own


def test_one_token_check_guards_mcp_and_the_api(token_server: LiveServer) -> None:
    """/mcp and /api answer a missing or wrong token alike (status, challenge, sentence), accept the same
    bearer (scheme in any case) and the same session cookie."""
    url = token_server.url
    for authorization in (None, "Bearer wrong", f"Basic {TOKEN}", TOKEN):
        headers = {**MCP_HEADERS, **({"authorization": authorization} if authorization else {})}
        mcp = httpx2.post(url + "/mcp", json=PING, headers=headers)
        api = httpx2.post(url + "/api/tts", json={}, headers=headers)
        assert mcp.status_code == api.status_code == 401, (authorization, mcp.text, api.text)
        assert mcp.headers["www-authenticate"] == api.headers["www-authenticate"] == 'Bearer realm="glmtts-mcp"'
        assert mcp.json() == api.json() == {"error": mcp.json()["error"], "field": None, "status": 401}
        assert "GLMTTS_MCP_TOKEN" in mcp.json()["error"]
    cookie = _session_cookie(httpx2.post(url + "/login", data={"token": TOKEN}, headers={"origin": url}))
    for headers, cookies in (({"authorization": f"bearer {TOKEN}"}, {}), ({}, {SESSION_COOKIE: cookie})):
        mcp = httpx2.post(url + "/mcp", json=PING, headers={**MCP_HEADERS, **headers}, cookies=cookies)
        api = httpx2.get(url + "/api/cache/stats", headers=headers, cookies=cookies)
        assert mcp.status_code not in (401, 403, 421) and api.status_code == 200, (headers, mcp.text, api.text)


def test_server_names_match_hosts_and_origins_exactly() -> None:
    names = ServerNames.for_bind("127.0.0.1", 8765, ["tts.lan", "https://tts.example"])
    hosts = ("127.0.0.1:8765", "LOCALHOST:9000", "[::1]:8765", "tts.lan", "tts.example")
    assert all(names.host_allowed(h) for h in hosts)
    assert not any(names.host_allowed(h) for h in ("evil.example:8765", "", "127.0.0.1:x", "tts.lan.evil.example"))
    allowed = (
        "http://127.0.0.1:8765",
        "http://[::1]:8765",
        "http://tts.lan:8765",
        "https://tts.example",
        "https://tts.example:443",
    )
    assert all(names.origin_allowed(o, "http", "127.0.0.1:8765") for o in allowed)
    refused = (
        "http://127.0.0.1:8766",
        "http://127.0.0.1:8765.evil.example",
        "null",
        "http://tts.lan",
        "https://tts.example:8443",
        "http://tts.example",
        "http://user@127.0.0.1:8765",
        "ftp://127.0.0.1:8765",
    )
    assert not any(names.origin_allowed(o, "http", "127.0.0.1:8765") for o in refused)
    # the scheme and authority a request was sent to are its own origin (a port forward, a TLS proxy)
    assert names.origin_allowed("http://localhost:9000", "http", "localhost:9000")
    assert not names.origin_allowed("http://localhost:9000", "http", "localhost:8765")


def test_wrong_sign_ins_are_counted_and_slowed_per_address() -> None:
    now = [0.0]
    throttle = LoginThrottle(free_tries=3, first_wait_s=1.0, max_wait_s=8.0, max_addresses=2, clock=lambda: now[0])
    assert [throttle.failed("10.0.0.1") for _ in range(7)] == [0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 8.0]
    assert throttle.failed("10.0.0.1") == 8.0  # capped
    assert throttle.wait_s("10.0.0.1") == 8.0 and throttle.wait_s("10.0.0.2") == 0.0  # per address
    now[0] = 8.0
    assert throttle.wait_s("10.0.0.1") == 0.0
    throttle.succeeded("10.0.0.1")
    assert throttle.failed("10.0.0.1") == 0.0  # a right sign-in forgets the failures
    assert throttle.failed_total == 9
    throttle.failed("10.0.0.2")
    throttle.failed("10.0.0.3")  # a third address: the longest quiet one is forgotten
    assert throttle.failed("10.0.0.1") == 0.0 and throttle.failed("10.0.0.2") == 0.0


def test_a_token_guesser_is_slowed(tmp_path, tiny_checkpoint) -> None:
    """200 guesses in a row: after the free tries every further one is answered 429 with Retry-After (the
    right token too, while the address waits), and the guesses are counted."""
    import time

    from web_helpers import live_server, make_web_app

    app = make_web_app(tmp_path, tiny_checkpoint, token=TOKEN)
    try:
        with live_server(app) as live, httpx2.Client(base_url=live.url, headers={"origin": live.url}) as client:
            statuses = [client.post("/login", data={"token": f"guess-{i}"}).status_code for i in range(200)]
            assert statuses[:6] == [401] * 6 and set(statuses[6:]) == {429}
            refused = client.post("/login", data={"token": TOKEN})
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            assert "Too many wrong sign-ins" in refused.text
            time.sleep(float(refused.headers["retry-after"]))
            assert client.post("/login", data={"token": TOKEN}).status_code == 303
            assert live.service.access.throttle.failed_total == 6
    finally:
        app.close()


def _raw_request(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    """One HTTP/1.1 request over a plain socket, exactly as written (no client library adds or drops a
    header); the status code of the answer."""
    import socket

    host, port = url.removeprefix("http://").rsplit(":", 1)
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", "connection: close", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while b"\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def test_pages_on_other_local_ports_cannot_change_state(
    server: LiveServer, token_server: LiveServer, client: httpx2.Client, clip_bytes: Callable[..., bytes]
) -> None:
    """A dev server's page (http://localhost:5173), another port with the session cookie, and an origin
    that only starts like ours: rename and delete are refused over raw sockets, and the voice is intact."""
    voice = client.post(
        "/api/voices", files={"audio": ("c.wav", clip_bytes(515.0), "audio/wav")}, data={"name": "kept"}
    ).json()["voice_id"]
    port = int(server.url.rsplit(":", 1)[1])
    rename = b'{"name": "stolen"}'
    for origin in ("http://localhost:5173", "http://127.0.0.1:3000", f"http://127.0.0.1:{port}.evil.example"):
        headers = {"origin": origin, "content-type": "application/json"}
        assert _raw_request(server.url, "PATCH", f"/api/voices/{voice}", headers, rename) == 403, origin
        assert _raw_request(server.url, "DELETE", f"/api/voices/{voice}", {"origin": origin}) == 403, origin
    assert client.get(f"/api/voices/{voice}").json()["name"] == "kept"
    url = token_server.url
    cookie = _session_cookie(httpx2.post(url + "/login", data={"token": TOKEN}, headers={"origin": url}))
    signed_in = {"cookie": f"{SESSION_COOKIE}={cookie}"}
    assert _raw_request(url, "DELETE", "/api/voices/none", signed_in) == 404  # the cookie works from our page
    for origin in ("http://localhost:3000", "http://localhost:5173"):
        assert _raw_request(url, "DELETE", "/api/voices/none", {**signed_in, "origin": origin}) == 403, origin
        assert _raw_request(url, "POST", "/mcp", {**signed_in, "origin": origin, **MCP_HEADERS}, b"{}") == 403
