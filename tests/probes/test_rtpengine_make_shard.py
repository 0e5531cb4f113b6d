"""rtpengine's make_shard instrumentation line (a user's build) becomes a make_shard event."""

from rig.probes.logs import parse_rtpengine_line

STARTED = 1764668000.0


def test_the_instrumentation_line_is_a_make_shard_event():
    line = ("[1764668012.500250] WARN: [core] bufferpool_make_shard: num=5 full=4 space=1 "
            "tid=140213377287744\n")
    event = parse_rtpengine_line(line, STARTED)
    assert event is not None
    assert event.kind == "make_shard"
    assert abs(event.t - 12.50025) < 1e-6
    assert event.data == {"num": 5, "full": 4, "space": 1, "thread": "tid 140213377287744",
                          "service": "rtpengine"}


def test_a_call_context_before_the_message_is_allowed():
    line = ("[1764668012.5] WARN: [abc123@host port 30000]: [core] bufferpool_make_shard: "
            "num=2 full=2 space=0 tid=77")
    event = parse_rtpengine_line(line, STARTED)
    assert event is not None and event.data["thread"] == "tid 77"


def test_other_lines_are_not_events_and_crit_lines_are():
    assert parse_rtpengine_line("[1764668012.5] INFO: [core] Startup complete", STARTED) is None
    assert parse_rtpengine_line("bufferpool_make_shard: num=2 full=2 space=0 tid=7",
                                STARTED) is None
    crit = parse_rtpengine_line("[1764668013.0] CRIT: [core] Failed to pin", STARTED)
    assert crit is not None and crit.kind == "crit"
    assert crit.data["text"] == "[core] Failed to pin"
