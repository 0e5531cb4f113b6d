from rig.probes.relay import relay_counters


def test_model_relay_reply_is_flattened():
    reply = {
        "result": "ok",
        "statistics": {"currentstatistics": {"sessionsown": 3, "sessionstotal": 3}},
        "bufferpool": {"shards_total": 5, "shards_active": 1, "shards_full": 2,
                       "shards_free": 0, "pins": 5, "live_allocations": 12, "shard_size": 4096},
        "sessions": 3,
        "streams": 6,
    }
    counters = relay_counters(reply)
    assert counters["relay.shards_total"] == 5
    assert counters["relay.shards_full"] == 2
    assert counters["relay.sessions"] == 3
    assert counters["relay.sessionsown"] == 3
    assert "relay.shard_size" not in counters  # a setting, not a counter


def test_real_rtpengine_reply_without_bufferpool_keeps_session_counts():
    # rtpengine 10.5 answers bencoded strings for some numbers
    reply = {"result": "ok", "statistics": {"currentstatistics": {"sessionsown": b"7"}}}
    assert relay_counters(reply) == {"relay.sessionsown": 7.0}


def test_non_numbers_are_skipped():
    reply = {"bufferpool": {"pins": "many", "shards_total": True}}
    assert relay_counters(reply) == {}


def test_the_allocation_site_histogram_becomes_site_counters():
    reply = {"allocation_sites": {"stream_stats": {"count": 4, "bytes": 2048},
                                  b"ssrc_entry": {"count": 4, "bytes": 1024}}}
    assert relay_counters(reply) == {
        "relay.site.stream_stats.count": 4.0, "relay.site.stream_stats.bytes": 2048.0,
        "relay.site.ssrc_entry.count": 4.0, "relay.site.ssrc_entry.bytes": 1024.0,
    }
