"""Every web path behind the same gate as /mcp: Host check, token or session cookie, CSRF refusal, body cap."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx2
import pytest
from web_helpers import TOKEN, LiveServer

from glmtts_mcp.web.security import SESSION_COOKIE

AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_token_is_required_on_every_new_path(token_server: LiveServer) -> None:
    url = token_server.url
    for method, path in (
        ("GET", "/api/voices"), ("GET", "/api/cache/stats"), ("GET", "/docs"), ("GET", "/openapi.json"),
        ("GET", "/static/app.js"), ("POST", "/api/tts"), ("GET", "/v1/audio/voices"), ("POST", "/v1/audio/speech"),
    ):
        response = httpx2.request(method, url + path, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert "GLMTTS_MCP_TOKEN" in httpx2.get(url + "/api/voices").json()["error"]
    assert httpx2.post(url + "/v1/audio/speech", json={}).json()["error"]["code"] == "invalid_api_key"
    assert httpx2.post(url + "/mcp", json={}).status_code == 401  # the MCP endpoint keeps its own check
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
            entry = live.face.entry_url(live.url)
            assert "/login?code=" in entry and TOKEN not in entry
            first = httpx2.get(entry)
            assert first.status_code == 303 and first.headers["location"] == "/"
            cookie = _session_cookie(first)
            cookies = {SESSION_COOKIE: cookie}
            assert httpx2.get(live.url + "/api/voices", cookies=cookies).status_code == 200
            assert httpx2.get(live.url + "/", cookies=cookies).status_code == 200
            again = httpx2.get(entry)
            assert again.status_code == 401 and "already used" in again.text  # one time only
            assert live.face.entry_url(live.url) == live.url + "/"
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


def test_foreign_origin_cannot_change_state(server: LiveServer, client: httpx2.Client,
                                            clip_bytes: Callable[..., bytes]) -> None:
    files = {"audio": ("clip.wav", clip_bytes(410.0), "audio/wav")}
    evil = {"origin": "http://evil.example"}
    refused = client.post("/api/voices", files=files, data={"transcript": "hi", "name": "csrf"}, headers=evil)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    assert client.get("/api/voices", params={"query": "csrf"}).json()["voices"] == []  # nothing was stored
    assert client.post("/api/voices", files=files, data={"transcript": "hi", "name": "csrf"},
                       headers={"origin": "null"}).status_code == 403
    assert client.post("/api/voices", files=files, data={"transcript": "hi", "name": "csrf"},
                       headers={"sec-fetch-site": "cross-site"}).status_code == 403
    for method in ("PATCH", "DELETE"):
        assert client.request(method, "/api/voices/x", json={"name": "y"}, headers=evil).status_code == 403
    assert client.post("/v1/audio/speech", json={}, headers=evil).status_code == 403
    same = client.post("/api/voices", files=files, data={"transcript": "hi", "name": "csrf"},
                       headers={"origin": server.url})
    assert same.status_code == 201  # the page's own origin
    assert client.get("/api/voices", headers=evil).status_code == 200  # reading is no state change


def test_get_never_changes_state(client: httpx2.Client) -> None:
    assert client.get("/api/tts").status_code == 405
    assert client.get("/v1/audio/speech").status_code == 405
    schema = client.get("/openapi.json").json()
    gets = {path for path, ops in schema["paths"].items() if "get" in ops}
    assert gets == {"/api/voices", "/api/voices/{voice}", "/api/voices/{voice}/audio", "/api/voices/{voice}/export",
                    "/api/cache/stats", "/v1/audio/voices"}


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
