"""The price table `lambdamesh cost` computes from: us-east-1 list prices, in one place.

Every price names where it was read and when. The pages were read through stored copies
(a search tool's archive, not the live site) on 2026-11-28; where a stored copy shows no
date, ``seen`` says so. Several AWS pricing pages render their rate tables in JavaScript, so
the stored text of the official page often carries the terms but not the figure: ``note``
then names the page the figure was actually read from. Check the live pages before quoting a
bill; they change.
"""

from __future__ import annotations

from dataclasses import dataclass

READ_ON = "2026-11-28"
NO_DATE = "as stored by the search tool; date not shown"


@dataclass(frozen=True)
class Price:
    amount: float
    unit: str
    source: str
    seen: str
    note: str = ""


@dataclass(frozen=True)
class Tier:
    """A band of a tiered price: `up_to` units a month (None: no limit) at `amount` each."""

    up_to: float | None
    amount: float


@dataclass(frozen=True)
class PriceTable:
    region: str
    api_gateway_rest: Price
    api_gateway_rest_tiers: tuple[Tier, ...]
    lambda_request: Price
    lambda_gb_second_x86_64: Price
    lambda_gb_second_arm64: Price
    dynamodb_write_request: Price
    dynamodb_read_request: Price
    dynamodb_wcu_hour: Price
    dynamodb_rcu_hour: Price
    secret_month: Price
    secret_api_call: Price
    endpoint_az_hour: Price
    endpoint_gb: Price
    logs_ingested_gb: Price
    cloud_map_instance_month: Price
    cloud_map_discovery_call: Price
    ec2_t3_small_hour: Price

    def all(self) -> dict[str, Price]:
        return {name: value for name, value in vars(self).items() if isinstance(value, Price)}


_APIGW = "https://aws.amazon.com/api-gateway/pricing/"
_APIGW_WHITEPAPER = (
    "https://docs.aws.amazon.com/whitepapers/latest/"
    "best-practices-api-gateway-private-apis-integration/cost-optimization.html"
)
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_LAMBDA_WHITEPAPER = (
    "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html"
)
_DDB_ON_DEMAND = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_DDB_PROVISIONED = "https://aws.amazon.com/dynamodb/pricing/provisioned/"
_SECRETS = "https://aws.amazon.com/secrets-manager/pricing/"
_PRIVATELINK = "https://aws.amazon.com/privatelink/pricing/"
_CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"
_CLOUD_MAP = "https://aws.amazon.com/cloud-map/pricing/"
_EC2_ON_DEMAND = "https://aws.amazon.com/ec2/pricing/on-demand/"

PRICES = PriceTable(
    region="us-east-1",
    api_gateway_rest=Price(
        3.50 / 1e6,
        "REST API call (first 333 M a month)",
        _APIGW_WHITEPAPER,
        NO_DATE,
        f"{_APIGW} as stored shows the terms, not the rates; the AWS whitepaper lists "
        "$3.50 / $2.80 / $2.38 / $1.51 per million by monthly volume",
    ),
    api_gateway_rest_tiers=(
        Tier(333e6, 3.50 / 1e6),
        Tier(1_000e6, 2.80 / 1e6),
        Tier(20_000e6, 2.38 / 1e6),
        Tier(None, 1.51 / 1e6),
    ),
    lambda_request=Price(
        0.20 / 1e6,
        "invocation",
        _LAMBDA_WHITEPAPER,
        NO_DATE,
        f"{_LAMBDA} as stored renders its rate table in script; same $0.20 per million there",
    ),
    lambda_gb_second_x86_64=Price(
        0.0000166667,
        "GB-second, x86_64 (first 6 billion a month)",
        _LAMBDA_WHITEPAPER,
        NO_DATE,
        "the whitepaper rounds it to $0.00001667",
    ),
    lambda_gb_second_arm64=Price(
        0.0000133334,
        "GB-second, arm64 (first 7.5 billion a month)",
        _LAMBDA,
        NO_DATE,
        "the stored official page does not show the figure; read from third-party tables "
        "quoting it (artillery's lib/platform/aws-lambda/prices.js, cloudchipr.com)",
    ),
    dynamodb_write_request=Price(
        0.625 / 1e6,
        "write request unit, on-demand, Standard table class",
        _DDB_ON_DEMAND,
        NO_DATE,
        "the stored page shows the terms, not the figure; $0.625 per million is the rate after "
        "the November 2024 halving (AWS News Blog, updated 2025-01-31), which older pages "
        "still quote as $1.25",
    ),
    dynamodb_read_request=Price(
        0.125 / 1e6,
        "read request unit, on-demand, Standard table class",
        _DDB_ON_DEMAND,
        NO_DATE,
        "as above; older pages quote $0.25",
    ),
    dynamodb_wcu_hour=Price(
        0.00065,
        "provisioned write capacity unit-hour, Standard table class",
        _DDB_PROVISIONED,
        NO_DATE,
        "the stored page shows the terms, not the figure: $0.00065 is the remembered list "
        "price, not confirmed by a stored page; check it",
    ),
    dynamodb_rcu_hour=Price(
        0.00013,
        "provisioned read capacity unit-hour, Standard table class",
        _DDB_PROVISIONED,
        NO_DATE,
        "as above: remembered, not confirmed by a stored page; check it",
    ),
    secret_month=Price(
        0.40,
        "secret-month",
        _SECRETS,
        "page read 2026-09-20 (transcription in api-evangelist/amazon-secrets-manager)",
    ),
    secret_api_call=Price(
        0.05 / 10_000,
        "API call",
        _SECRETS,
        "page read 2026-09-20 (transcription in api-evangelist/amazon-secrets-manager)",
    ),
    endpoint_az_hour=Price(
        0.01,
        "interface endpoint-hour per Availability Zone",
        _PRIVATELINK,
        NO_DATE,
        "the stored page explains per-AZ hourly billing but shows only the per-GB tiers; "
        "$0.01 an hour is from third-party guides (awsnegotiations.com, updated May 2026)",
    ),
    endpoint_gb=Price(
        0.01,
        "GB processed by interface endpoints (first 1 PB)",
        _PRIVATELINK,
        NO_DATE,
    ),
    logs_ingested_gb=Price(
        0.50,
        "GB of CloudWatch Logs ingested (standard class)",
        _CLOUDWATCH,
        NO_DATE,
        "the stored page's Logs tab is not in its text; $0.50 from third-party guides "
        "(cloudburn.io, citing the official page as of February 2026)",
    ),
    cloud_map_instance_month=Price(
        0.10,
        "registered instance-month",
        _CLOUD_MAP,
        "AWS Price List, effective 2025-08-01 (copy in huggingface "
        "labofsahil/aws-pricing-dataset, AWSCloudMap.csv)",
    ),
    cloud_map_discovery_call=Price(
        1.00 / 1e6,
        "DiscoverInstances call",
        _CLOUD_MAP,
        "AWS Price List, effective 2025-08-01 (same file: $1.00 per million API calls)",
    ),
    # For the comparison with Eureka's own servers: a JVM with a small heap fits 2 GiB, and
    # Netflix's "Deploying Eureka Servers in EC2" runs at least one server per zone.
    ec2_t3_small_hour=Price(
        0.0208,
        "t3.small instance-hour (2 vCPU, 2 GiB), Linux, on demand",
        _EC2_ON_DEMAND,
        NO_DATE,
        "the stored page renders its rate table in script: $0.0208 is from third-party "
        "us-east-1 tables quoting it (public cost estimators' price tables), not confirmed by "
        "a stored official page; check it",
    ),
)
