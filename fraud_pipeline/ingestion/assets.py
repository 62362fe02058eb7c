"""Ingestion: the users, transactions and chargebacks known at the run's as_of."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from fraud_pipeline.core.simulator import simulate_world
from fraud_pipeline.core.warehouse import replace_tables, table_count
from fraud_pipeline.resources import DUCKDB_POOL, RunClock, SimulatedWorld

RAW_TABLES = ("users", "transactions", "chargebacks")

KNOWN_AT_AS_OF = {
    "users": "SELECT user_id, created_at, region FROM sim_users WHERE created_at < $as_of ORDER BY user_id",
    "transactions": """
        SELECT transaction_id, user_id, merchant_id, event_time, amount, channel, country, mcc
        FROM sim_transactions WHERE event_time < $as_of ORDER BY transaction_id
    """,
    "chargebacks": """
        SELECT transaction_id, reported_at, reason
        FROM sim_chargebacks WHERE reported_at < $as_of ORDER BY transaction_id
    """,
}


@dg.multi_asset(
    specs=[
        dg.AssetSpec("users", description="Accounts with their created_at, as known at as_of.", kinds={"duckdb"}),
        dg.AssetSpec("transactions", description="Card transactions authorised before as_of.", kinds={"duckdb"}),
        dg.AssetSpec(
            "chargebacks",
            description="Chargebacks (label events) with the time they were reported, as known at as_of.",
            kinds={"duckdb"},
        ),
    ],
    group_name="ingestion",
    pool=DUCKDB_POOL,
)
def raw_tables(context: dg.AssetExecutionContext, duckdb: DuckDBResource, world: SimulatedWorld, clock: RunClock):
    """Simulates the world and keeps only what was known strictly before as_of."""
    as_of = clock.as_of_datetime()
    simulated = simulate_world(world.spec())
    sources = {
        "sim_users": simulated.users,
        "sim_transactions": simulated.transactions,
        "sim_chargebacks": simulated.chargebacks,
    }
    with duckdb.get_connection() as con:
        replace_tables(con, KNOWN_AT_AS_OF, sources=sources, params={"as_of": as_of})
        counts = {name: table_count(con, name) for name in RAW_TABLES}
    context.log.info(f"world at as_of {as_of:%Y-%m-%d}: {counts}")
    for name in RAW_TABLES:
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={
                "rows": dg.MetadataValue.int(counts[name]),
                "simulated_rows": dg.MetadataValue.int(len(sources[f"sim_{name}"])),
                "as_of": as_of.isoformat(),
                "seed": world.seed,
            },
        )
