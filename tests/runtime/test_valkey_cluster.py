"""The local cluster starter: where a key's slot lives, and which replica follows which
primary (what bench/fanout.py --failover-at relies on to pick its victim and heir)."""

from __future__ import annotations

import redis

from gateway.runtime.valkey_cluster import local_cluster


def test_primary_for_and_replica_of_match_the_cluster() -> None:
    with local_cluster(replicas=True) as cluster:
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.primaries[0].port)
        try:
            keys = [f"iot:{{tenant:device-{n}}}:shadow" for n in range(30)]
            for key in keys:
                assert cluster.primary_for(key).port == client.get_node_from_key(key).port
            assert {cluster.primary_for(k).port for k in keys} == {
                p.port for p in cluster.primaries}
            heirs = [cluster.replica_of(p) for p in cluster.primaries]
            assert sorted(h.port for h in heirs) == sorted(r.port for r in cluster.replicas)
            for primary, heir in zip(cluster.primaries, heirs, strict=True):
                role = heir.client().execute_command("ROLE")
                assert role[0] == b"slave" and int(role[2]) == primary.port
        finally:
            client.close()
