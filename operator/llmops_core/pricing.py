"""On-demand prices of the EC2 instance types llmops schedules onto: a dated table, or live from AWS.

The table is a snapshot (Linux, shared tenancy, us-east-1) so that ``llmops estimate`` works offline and
gives the same answer twice; ``live_prices`` asks the AWS Price List API (boto3 ``pricing``) for the
current numbers when a caller wants them. Prices change: the snapshot's date is printed with every cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

REGION = "us-east-1"
AS_OF = "2025-08-01"
SOURCE = "https://aws.amazon.com/ec2/pricing/on-demand/ (Linux, shared tenancy, us-east-1)"

# USD per instance-hour. None: no public on-demand price (capacity blocks or reservations only).
ON_DEMAND_USD_PER_HOUR: dict[str, float | None] = {
    "p4d.24xlarge": 21.96, "p4de.24xlarge": 27.45,
    "p5.48xlarge": 55.04, "p5e.48xlarge": None, "p5en.48xlarge": 63.30,
    "g5.xlarge": 1.006, "g5.2xlarge": 1.212, "g5.4xlarge": 1.624, "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672, "g5.16xlarge": 4.096, "g5.24xlarge": 8.144, "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048, "g6.2xlarge": 0.9776, "g6.4xlarge": 1.3232, "g6.8xlarge": 2.0144,
    "g6.12xlarge": 4.6016, "g6.16xlarge": 3.3968, "g6.24xlarge": 6.6752, "g6.48xlarge": 13.3504,
    "g6e.xlarge": 1.861, "g6e.2xlarge": 2.242, "g6e.4xlarge": 3.004, "g6e.8xlarge": 4.529,
    "g6e.12xlarge": 10.493, "g6e.16xlarge": 7.577, "g6e.24xlarge": 15.066, "g6e.48xlarge": 30.131,
    "trn1.2xlarge": 1.34375, "trn1.32xlarge": 21.50, "trn1n.32xlarge": 24.78, "trn2.48xlarge": None,
    "inf2.xlarge": 0.7582, "inf2.8xlarge": 1.9679, "inf2.24xlarge": 6.4906, "inf2.48xlarge": 12.9813,
}  # fmt: skip

# The Price List API names regions by their long name.
_LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-2": "US West (Oregon)",
}


class PricingError(Exception):
    """The live price lookup failed (no credentials, no network, unknown region): one line."""


def live_prices(instance_types: Iterable[str], region: str = REGION, client: Any = None) -> dict[str, float]:
    """Current on-demand USD/hour per instance type from the AWS Price List API (types it lacks are left out).

    The Price List API is served from us-east-1 whatever region is priced; ``client`` is a boto3
    ``pricing`` client (tests pass a stubbed one).
    """
    if region not in _LOCATIONS:
        raise PricingError(f"region {region!r} is not one of {sorted(_LOCATIONS)}")
    if client is None:
        import boto3

        client = boto3.client("pricing", region_name="us-east-1")
    out: dict[str, float] = {}
    for itype in instance_types:
        filters = {
            "instanceType": itype,
            "location": _LOCATIONS[region],
            "operatingSystem": "Linux",
            "tenancy": "Shared",
            "preInstalledSw": "NA",
            "capacitystatus": "Used",
        }
        try:
            resp = client.get_products(
                ServiceCode="AmazonEC2",
                Filters=[{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in filters.items()],
                MaxResults=10,
            )
        except Exception as e:  # botocore's errors: credentials, endpoint, throttling
            raise PricingError(f"AWS Price List API: {e}".replace("\n", " ")) from None
        price = _on_demand_usd(resp.get("PriceList", []))
        if price is not None:
            out[itype] = price
    return out


def _on_demand_usd(price_list: list[str]) -> float | None:
    """The hourly USD price in a Price List answer (each item is a JSON document, as a string)."""
    for item in price_list:
        terms = json.loads(item).get("terms", {}).get("OnDemand", {})
        for term in terms.values():
            for dim in term.get("priceDimensions", {}).values():
                usd = float(dim.get("pricePerUnit", {}).get("USD", "0"))
                if dim.get("unit") == "Hrs" and usd > 0:
                    return usd
    return None
