"""Live prices from the AWS Price List API, against a recorded answer (botocore's Stubber checks the
request we send, filters included), and the dated table the offline estimate uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmops.main import cli
from llmops_core.api.hardware import INSTANCES
from llmops_core.pricing import AS_OF, ON_DEMAND_USD_PER_HOUR, PricingError, live_prices

boto3 = pytest.importorskip("boto3")
from botocore.stub import ANY, Stubber  # noqa: E402

RECORDED = json.loads((Path(__file__).parent / "data" / "pricing-get-products-p5.json").read_text())
FAMILIES = ("p4d", "p4de", "p5", "p5e", "p5en", "g5", "g6", "g6e", "trn1", "trn2", "inf2")


def stubbed(responses: dict[str, dict]):
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    for itype, response in responses.items():
        filters = [
            {"Type": "TERM_MATCH", "Field": f, "Value": v}
            for f, v in [("instanceType", itype), ("location", "US East (N. Virginia)"), ("operatingSystem", "Linux"),
                         ("tenancy", "Shared"), ("preInstalledSw", "NA"), ("capacitystatus", "Used")]
        ]  # fmt: skip
        stub.add_response(
            "get_products", response, {"ServiceCode": "AmazonEC2", "Filters": filters, "MaxResults": ANY}
        )
    stub.activate()
    return client, stub


def test_live_price_parsed_from_a_recorded_answer():
    client, stub = stubbed(
        {"p5.48xlarge": RECORDED, "trn2.48xlarge": {"FormatVersion": "aws_v1", "PriceList": []}}
    )
    assert live_prices(["p5.48xlarge", "trn2.48xlarge"], client=client) == {"p5.48xlarge": 55.04}
    stub.assert_no_pending_responses()


def test_live_price_errors_are_one_line():
    client = boto3.client(
        "pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stub = Stubber(client)
    stub.add_client_error(
        "get_products", "AccessDeniedException", "User is not authorized\\nto call GetProducts"
    )
    stub.activate()
    with pytest.raises(PricingError, match="AccessDeniedException") as e:
        live_prices(["p5.48xlarge"], client=client)
    assert "\n" not in str(e.value)
    with pytest.raises(PricingError, match="region"):
        live_prices(["p5.48xlarge"], region="mars-1")


def test_cli_live_prices_replace_the_table(monkeypatch):
    client, _ = stubbed({"p5.48xlarge": RECORDED})
    monkeypatch.setattr(boto3, "client", lambda *a, **k: client)
    monkeypatch.setattr("llmops_core.estimate.INSTANCES", {"p5.48xlarge": INSTANCES["p5.48xlarge"]})
    out = CliRunner().invoke(cli, ["estimate", "1b", "--steps", "1000", "--live-prices", "-o", "json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["prices"]["as_of"] == "live"
    [p5] = report["options"]
    assert p5["usd_per_hour"] == 55.04 and p5["usd_per_run"] == pytest.approx(p5["hours"] * 55.04, abs=0.01)


def test_the_table_is_dated_and_covers_every_listed_family():
    assert AS_OF[:4].isdigit()
    for family in FAMILIES:
        types = [t for t in INSTANCES if t.split(".")[0] == family]
        assert types, family
        assert all(t in ON_DEMAND_USD_PER_HOUR for t in types), family
        assert all(INSTANCES[t].device_memory_gib > 0 for t in types), family
