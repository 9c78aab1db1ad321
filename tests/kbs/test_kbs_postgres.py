"""The broker on a real PostgreSQL: two replicas on one database share the signing key, the
resources and one unforked audit chain while guests attest against both at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ccai.kbs import KbsClient, verify_audit_chain
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend

from .conftest import POLICY, Admin, broker_app, make_evidence, serve

pytestmark = [pytest.mark.extra("service"), pytest.mark.extra("postgres"), pytest.mark.postgres]


def test_two_replicas_on_one_database(
    ccai_home: Path, vm: tuple[VirtualCpuTee, VirtualGpuBackend], postgres_url: str
) -> None:
    url = postgres_url
    with (
        serve(broker_app(ccai_home, database_url=url)) as a,
        serve(broker_app(ccai_home, database_url=url)) as b,
    ):
        first, second = Admin(a, ccai_home), Admin(b, ccai_home)
        first.put("pg/kek/m", b"v1")
        second.put("pg/kek/m", b"v2")  # one version sequence across replicas
        first.policy("pg", POLICY, repo="pg")
        got: list[bytes] = []
        errors: list[BaseException] = []

        def guest(attest_at: str, fetch_at: str) -> None:
            try:
                with KbsClient(attest_at, evidence=make_evidence(*vm)) as client:
                    client.attest()
                    client.url = fetch_at  # a token from one replica is honoured by the other
                    got.append(client.get_resource("pg/kek/m"))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=guest, args=((a, b) if i % 2 else (b, a))) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert got == [b"v2"] * 8
        records = first.audit()
        assert verify_audit_chain(records) == len(records)
        assert sum(r["event"] == "release" and r["verdict"] == "pass" for r in records) == 8
