"""Names and types of the warehouse: go-snakecase's own test vectors, Segment's documented
examples, flattening, reserved words, and the type rules."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from test_warehouse_support import build_warehouse, make_event, wh  # noqa: F401

from server.store import workspace
from server.warehouse.naming import event_table, flatten, identifier, schema_name
from server.warehouse.snakecase import snakecase
from server.warehouse.transform import rows_for_event
from server.warehouse.types import Unfit, fit, infer

# All 32 vectors of segmentio/go-snakecase snake_test.go, in its order.
GO_SNAKECASE_VECTORS = [
    ("@49L0S145_¬fwHƒ0TSLNVp", "49l0s145_fw_h_0tslnvp"),
    ("lk0B@bFmjrLQ_Z6YL", "lk0_b_b_fmjr_lq_z6yl"),
    ("samPLE text", "sam_ple_text"),
    ("sample text", "sample_text"),
    ("sample-text", "sample_text"),
    ("sample_text", "sample_text"),
    ("sample___text", "sample_text"),
    ("sampleText", "sample_text"),
    ("inviteYourCustomersAddInvites", "invite_your_customers_add_invites"),
    ("sample 2 Text", "sample_2_text"),
    ("   sample   2    Text   ", "sample_2_text"),
    ("   $#$sample   2    Text   ", "sample_2_text"),
    ("SAMPLE 2 TEXT", "sample_2_text"),
    ("___$$Base64Encode", "base64_encode"),
    ("FOO:BAR$BAZ", "foo_bar_baz"),
    ("FOO#BAR#BAZ", "foo_bar_baz"),
    ("something.com", "something_com"),
    ("$something%", "something"),
    ("something.com", "something_com"),
    ("•¶§ƒ˚foo˙∆˚¬", "foo"),
    ("CStringRef", "cstring_ref"),
    ("5test", "5test"),
    ("test5", "test5"),
    ("THE5r", "the5r"),
    ("5TEst", "5test"),
    ("_5TEst", "5test"),
    ("@%#&5TEst", "5test"),
    ("edf_6N", "edf_6n"),
    ("f_pX9", "f_p_x9"),
    ("p_z9Rg", "p_z9_rg"),
    ("2FA Enabled", "2fa_enabled"),
    ("Enabled 2FA", "enabled_2fa"),
]


def test_there_are_32_vectors():
    assert len(GO_SNAKECASE_VECTORS) == 32


@pytest.mark.parametrize("text,expected", GO_SNAKECASE_VECTORS)
def test_go_snakecase_vectors(text, expected):
    assert snakecase(text) == expected


def test_go_snakecase_readme_examples():
    # The module's Example outputs (nonASCII / multiline / quoted).
    assert snakecase("•¶§ƒ˚foo˙∆˚¬bar") == "foo_bar"
    assert snakecase("here\nis\na\nmultiline\nstring") == "here_is_a_multiline_string"
    assert snakecase('"hello world"') == "hello_world"


def test_docs_register_example_gives_plan_and_account_type():
    event = {"type": "track", "messageId": "m1", "event": "Register",
             "properties": {"plan": "Pro Annual", "accountType": "Facebook"}}
    rows = dict(rows_for_event(event, datetime(2024, 1, 1, tzinfo=timezone.utc), lambda m: None))
    assert set(rows) == {"tracks", "register"}
    assert rows["register"]["plan"] == "Pro Annual"
    assert rows["register"]["account_type"] == "Facebook"
    assert "plan" not in rows["tracks"]  # tracks holds no custom properties


def test_event_table_names():
    assert event_table("Order Completed") == "order_completed"
    assert event_table("Signed Up!") == "signed_up"
    assert event_table("101 Account Update") == "_101_account_update"
    assert event_table("Pages") == "_pages"  # never lands in a standard table
    assert event_table("open") == "_open"


def test_reserved_words_and_leading_digits_get_an_underscore():
    assert identifier("open") == "_open"
    assert identifier("select") == "_select"
    assert identifier("3doctors") == "_3doctors"
    assert identifier("userName") == "user_name"
    assert identifier("$$$") == ""
    assert schema_name("my_shop") == "my_shop"
    assert schema_name("2nd_site") == "_2nd_site"
    assert len(identifier("x" * 100)) == 63


def test_flatten_nested_objects_and_stringify_arrays():
    data = {
        "app": {"version": "1.2", "build": 7},
        "field": {"nestedA": {"nestedB": True}},
        "tags": ["507f1", "505bd"],
        "empty": None,
        "nothing": {},
    }
    flat = dict(flatten(data, "context"))
    assert flat == {
        "context_app_version": "1.2",
        "context_app_build": 7,
        "context_field_nested_a_nested_b": True,
        "context_tags": '["507f1","505bd"]',
    }


def test_flattening_of_context_properties_and_traits():
    notices: list[str] = []
    received = datetime(2024, 1, 1, tzinfo=timezone.utc)
    identify = {"type": "identify", "messageId": "m1", "userId": "u1",
                "context": {"app": {"version": "3.1"}, "device": {"type": "ios"}},
                "traits": {"address": {"street": "1 Main St", "postalCode": "10001"}, "firstName": "Ada"}}
    rows = dict(rows_for_event(identify, received, notices.append))
    assert rows["identifies"]["context_app_version"] == "3.1"
    assert rows["identifies"]["context_device_type"] == "ios"
    assert rows["identifies"]["address_street"] == "1 Main St"
    assert rows["identifies"]["address_postal_code"] == "10001"
    assert rows["users"]["first_name"] == "Ada" and rows["users"]["id"] == "u1"
    assert "anonymous_id" not in rows["users"]
    track = {"type": "track", "messageId": "m2", "event": "Product Viewed",
             "properties": {"product_id": {"sku": "A-1"}, "price": 9.5}}
    rows = dict(rows_for_event(track, received, notices.append))
    assert rows["product_viewed"]["product_id_sku"] == "A-1"
    assert rows["product_viewed"]["price"] == 9.5


def test_properties_named_like_common_columns_are_dropped_and_reported():
    notices: list[str] = []
    event = {"type": "track", "messageId": "m1", "userId": "u1", "event": "Clicked",
             "properties": {"userId": "someone-else", "id": 5, "received_at": "x", "context": {"ip": "1"}, "ok": 1}}
    rows = dict(rows_for_event(event, datetime(2024, 1, 1, tzinfo=timezone.utc), notices.append))
    assert rows["clicked"]["user_id"] == "u1"
    assert rows["clicked"]["id"] == "m1"
    assert rows["clicked"]["ok"] == 1
    assert "context_ip" not in rows["clicked"]
    assert any("clicked.user_id" in n for n in notices)
    assert any("clicked.id" in n for n in notices)
    assert any("clicked.context_ip" in n for n in notices)


def test_type_inference():
    assert infer(True) == "boolean"
    assert infer(3) == "integer"
    assert infer(2**70) == "float"
    assert infer(3.5) == "float"
    assert infer("2024-05-01T12:00:00Z") == "timestamp"
    assert infer("2024-05-01T12:00:00.123456789+02:00") == "timestamp"
    assert infer("2024-05-01") == "timestamp"
    assert infer("2024-13-01T00:00:00Z") == "text"
    assert infer("hello") == "text"
    assert infer("123") == "text"


def test_casts_where_safe_and_refuses_the_rest():
    assert fit(3, "float") == 3.0
    assert fit(3, "text") == "3"
    assert fit(True, "text") == "true"
    assert fit(4.5, "text") == "4.5"
    assert fit("2024-05-01T12:00:00+02:00", "timestamp") == datetime(2024, 5, 1, 10, tzinfo=timezone.utc)
    for value, kind in [("abc", "integer"), (4.5, "integer"), (True, "integer"), ("x", "boolean"),
                        (1, "boolean"), ("later", "timestamp"), ("1.5", "float")]:
        with pytest.raises(Unfit):
            fit(value, kind)


def test_page_properties_copying_the_page_name_are_not_reported():
    notices: list[str] = []
    page = {"type": "page", "messageId": "m1", "name": "Home", "properties": {"name": "Home", "path": "/"}}
    rows = dict(rows_for_event(page, datetime(2024, 1, 1, tzinfo=timezone.utc), notices.append))
    assert rows["pages"]["name"] == "Home" and rows["pages"]["path"] == "/" and notices == []
    page["properties"]["name"] = "Other"
    rows = dict(rows_for_event(page, datetime(2024, 1, 1, tzinfo=timezone.utc), notices.append))
    assert rows["pages"]["name"] == "Home" and notices == ["pages.name: dropped a property/trait named like a standard column"]


def test_event_tables_never_start_with_sqlite_():
    assert event_table("SQLite Error") == "_sqlite_error"
    assert event_table("sqlite_stats") == "_sqlite_stats"
    assert event_table("sqlite") == "sqlite"  # only the prefix SQLite reserves
    assert event_table("sqlite_" + "x" * 80) == "_sqlite_" + "x" * 55  # still 63 characters


def test_events_named_like_sqlite_internals_load_and_do_not_hold_others_back(wh):
    wh.emit(make_event("track", messageId="e1", event="SQLite Error", properties={"code": 5}),
            make_event("track", messageId="e2", event="sqlite_stats"),
            make_event("track", messageId="e3", event="Good"))
    sync = wh.sync()
    assert sync["error"] is None
    assert sync["rows"] == {"tracks": 3, "_sqlite_error": 1, "_sqlite_stats": 1, "good": 1}
    assert wh.query("SELECT id, code, event, event_text FROM _sqlite_error") == [
        ("e1", 5, "_sqlite_error", "SQLite Error")]
    assert wh.query("SELECT id FROM good") == [("e3",)]


def test_postgresql_system_column_names_get_an_underscore():
    for name in ("tableoid", "xmin", "cmin", "xmax", "cmax", "ctid", "oid"):
        assert identifier(name) == "_" + name
    assert identifier("xminimum") == "xminimum"
    assert dict(flatten({"a": {"xmin": 1}})) == {"a_xmin": 1}  # only a whole name is reserved


def test_properties_named_like_system_columns_load_on_both_targets(wh):
    wh.emit(make_event("track", messageId="e1", event="Clicked", properties={"xmin": 1, "ctid": "a", "oid": 7}),
            make_event("track", messageId="e2", event="Other"))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"] == {"tracks": 2, "clicked": 1, "other": 1}
    assert wh.query("SELECT id, _xmin, _ctid, _oid FROM clicked") == [("e1", 1, "a", 7)]


def test_schemas_postgresql_reserves_get_an_underscore_others_keep_their_names():
    assert schema_name("pg_shop") == "_pg_shop"
    assert schema_name("pg_catalog") == "_pg_catalog"
    assert schema_name("information_schema") == "_information_schema"
    assert schema_name("pg") == "pg" and schema_name("pgshop") == "pgshop" and schema_name("my_pg_shop") == "my_pg_shop"
    assert schema_name("pg_" + "x" * 80) == "_pg_" + "x" * 59


@pytest.mark.postgres
def test_a_source_whose_slug_starts_with_pg_loads_into_postgresql(tmp_path, pg):
    import psycopg

    wh = build_warehouse("postgres", tmp_path, pg)
    wh.source = workspace.create_source(wh.engine, "PG Shop")
    assert wh.source["slug"] == "pg_shop"
    wh.destination = workspace.add_destination(wh.engine, wh.source["id"], slug="warehouse", mode="cloud",
                                               enabled=True, settings=wh.destination["settings"])
    wh.emit(make_event("page", messageId="p1"))
    sync = wh.sync()
    assert sync["error"] is None and sync["rows"] == {"pages": 1}
    with psycopg.connect(wh.target_url.replace("+psycopg", "")) as db:
        assert db.execute("SELECT id FROM _pg_shop.pages").fetchall() == [("p1",)]
    wh.engine.dispose()
