"""The worker backends: replay from the history, and the OpenAI-compatible client against a local stub.

The stub HTTP server lives only in this unit test; it fails the first call with 503 to
exercise the retry with backoff.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from router_core.history import History
from schemas import QueryEvent, RoutedQuery
from streams.config import ModelSettings
from streams.worker import OpenAIBackend, OverReservation, ReplayBackend, output_token_cap


def routed(query_id: str = "q1", model: str = "m") -> RoutedQuery:
    return RoutedQuery(query=QueryEvent(id=query_id, text="2+2?"), model=model, partition=0, phase="learned",
                       estimated_quality=0.5, estimated_cost=0.01, routed_at=1.0)


def test_replay_answers_with_the_recorded_cost_quality_and_response() -> None:
    history = History(ids=("q1",), prompts=("2+2?",), tasks=("t",), models=("a", "m"),
                      quality=np.array([[0.0, 1.0]]), cost=np.array([[0.5, 0.25]]), responses=(("x", "4"),))
    backend = ReplayBackend(history, "m")
    answer = backend.answer(routed("run1:q1"), 0.25)
    assert (answer.cost, answer.quality, answer.response) == (0.25, 1.0, "4")
    assert backend.answer(routed("unknown"), 1.0).cost == 0.01  # not in the history: the estimate
    with pytest.raises(OverReservation, match="beyond the reservation"):
        backend.answer(routed("q1"), 0.2499)  # the recorded answer costs more than the reservation: refused


@pytest.fixture()
def stub_server():  # noqa: ANN201
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if len(calls) == 1:
                self.send_response(503)
                self.end_headers()
                return
            reply = {"choices": [{"message": {"content": "4"}}], "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", calls
    server.shutdown()


def test_openai_backend_retries_and_prices_the_tokens(stub_server, monkeypatch) -> None:  # noqa: ANN001
    base_url, calls = stub_server
    monkeypatch.setenv("OPENAI_BASE_URL", base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "secret")
    model = ModelSettings(name="m", budget=1.0, price_input_per_token=1e-6, price_output_per_token=3e-6,
                          api_model="gpt-x")
    answer = OpenAIBackend(model, retries=3).answer(routed(), 1.0)
    assert len(calls) == 2 and calls[1]["path"] == "/v1/chat/completions"
    assert calls[1]["body"]["model"] == "gpt-x" and calls[1]["auth"] == "Bearer secret"
    assert calls[1]["body"]["max_tokens"] == output_token_cap(model, "2+2?", 1.0)
    assert answer.cost == pytest.approx(10 * 1e-6 + 2 * 3e-6)
    assert (answer.response, answer.input_tokens, answer.output_tokens) == ("4", 10, 2)


def test_the_api_workers_output_cap_keeps_the_worst_case_cost_within_the_reservation() -> None:
    model = ModelSettings(name="m", budget=1.0, price_input_per_token=1e-6, price_output_per_token=3e-6)
    text = "héllo"  # 6 UTF-8 bytes
    tokens = output_token_cap(model, text, 1e-3)
    worst = (6 + 64) * 1e-6 + tokens * 3e-6
    assert worst <= 1e-3 < worst + 3e-6
    with pytest.raises(OverReservation, match="no output token"):
        output_token_cap(model, text, 70e-6)
    assert output_token_cap(ModelSettings(name="free", budget=1.0), text, 1e-9) is None
