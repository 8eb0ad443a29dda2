"""Realistic demo production data, generated inside PostgreSQL so seeding 240,000 rows takes seconds."""

from __future__ import annotations

import psycopg
from psycopg import sql

# Values that break hand-written CSV handling: delimiters, quotes, newlines, backslashes, the
# text `\N`, unicode outside the BMP, empty strings next to NULLs.
EDGE_CASE_CUSTOMERS_SQL = r"""
INSERT INTO shop.customers (public_id, email, full_name, "Display Name", note, is_active, vip,
                            created_at, birthday, tags, preferences, avatar)
VALUES
 ('00000000-0000-0000-0000-000000000001', 'ada@example.com', 'Ada, "The Countess" Lovelace',
  'Ada ✓', E'line one\nline two, with "quotes"\r\nand a tab\there', true, NULL,
  '2024-02-29 23:59:59.999999+00', '1815-12-10', ARRAY['a,b', 'quote"d', NULL, ''],
  '{"lang": "en", "emoji": "🚀", "nested": {"list": [1, 2.5, null, "x,y"]}}', '\x00ff00'),
 ('00000000-0000-0000-0000-000000000002', 'nul@example.com', 'Empty Note', '', '', false, false,
  '1970-01-01 00:00:00+00', NULL, '{}', 'null', ''),
 ('00000000-0000-0000-0000-000000000003', 'backslash@example.com', E'Back\\slash \\N', NULL,
  E'\\N', true, true, 'infinity', '-infinity', NULL, '[]', '\x5c4e'),
 ('00000000-0000-0000-0000-000000000004', 'unicode@example.com', 'Zoë Ünïcødé 日本語 עברית',
  'ζ', 'Ümlaut, ñ, 𝄞 (outside the BMP)', true, NULL, '2025-06-30 12:00:00+05:30', '2000-02-29',
  ARRAY['日本', 'tab	inside'], '{"k": "v\"with quote"}', NULL);
"""

SEED_SQL = r"""
SELECT setseed(0.42);

INSERT INTO shop.customers (public_id, email, full_name, "Display Name", note, is_active, vip,
                            created_at, birthday, tags, preferences, avatar)
SELECT md5('customer' || g)::uuid,
       'user' || g || '@example.com',
       (ARRAY['Alice', 'Bob', 'Chloé', 'Dmitri', 'Eşref', 'Fatima', 'Gunnar', 'Hiroshi'])[1 + g % 8]
         || ' ' || (ARRAY['Smith', 'O''Brien', 'Müller', 'García', 'Nguyen', 'Kowalski'])[1 + g % 6],
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'Customer #' || g END,
       CASE g % 7 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'Prefers email, not "phone"'
                  WHEN 3 THEN E'Two\nlines' ELSE 'Regular customer since ' || (2010 + g % 14) END,
       g % 13 <> 0,
       CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN true ELSE false END,
       timestamptz '2020-01-01 00:00:00+00' + (g * interval '1 hour 7 minutes 13.123456 seconds'),
       CASE WHEN g % 5 = 0 THEN NULL ELSE date '1950-01-01' + (g * 7 % 20000) END,
       CASE g % 4 WHEN 0 THEN NULL WHEN 1 THEN '{{}}'::text[] ELSE ARRAY['tier-' || g % 3, 'region-' || g % 5] END,
       CASE WHEN g % 6 = 0 THEN NULL
            ELSE jsonb_build_object('newsletter', g % 2 = 0, 'score', round((random() * 100)::numeric, 3),
                                    'langs', jsonb_build_array('en', 'de')) END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END
FROM generate_series(1, {customers}) AS g;

INSERT INTO shop.products (sku, name, price, weight_kg, rating, dimensions, attributes, added_on)
SELECT 'SKU-' || lpad(g::text, 6, '0'),
       (ARRAY['Widget', 'Gadget', 'Doohickey', 'Sprocket', 'Gizmo'])[1 + g % 5] || ', size ' || g % 40,
       round((1 + random() * 999)::numeric, 2),
       CASE g % 50 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN 'Infinity' WHEN 2 THEN -0.0
            ELSE random() * 25 END,
       CASE WHEN g % 11 = 0 THEN NULL ELSE (random() * 5)::real END,
       ARRAY[g % 100, (g * 7) % 100, NULLIF(g % 3, 0)],
       jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[1 + g % 3], 'fragile', g % 4 = 0),
       date '2019-01-01' + g % 2000
FROM generate_series(1, {products}) AS g;

INSERT INTO shop.orders (customer_id, status, ordered_at, total, delivery_window, delivered_on,
                         pickup_time, metadata)
SELECT 1 + (g::bigint * 7919) % (SELECT count(*) FROM shop.customers),
       (ARRAY['pending', 'paid', 'shipped', 'cancelled', 'refunded'])[1 + g % 5]::shop.order_status,
       timestamptz '2024-01-01 00:00:00+00' + (g * interval '17 minutes 31.5 seconds'),
       round((random() * 2000)::numeric, 2),
       CASE WHEN g % 4 = 0 THEN NULL ELSE make_interval(days => g % 9, hours => g % 24, mins => g % 60) END,
       CASE WHEN g % 5 = 2 THEN date '2024-01-03' + g / 80 END,
       CASE WHEN g % 3 = 0 THEN time '08:00' + (g % 600) * interval '1 minute' END,
       CASE WHEN g % 8 = 0 THEN NULL ELSE json_build_object('channel', (ARRAY['web', 'app', 'phone'])[1 + g % 3]) END
FROM generate_series(1, {orders}) AS g;

INSERT INTO shop.order_items (order_id, ordered_at, product_id, quantity, unit_price)
SELECT o.id, o.ordered_at, 1 + (o.id * 31 + i * 17) % (SELECT count(*) FROM shop.products),
       1 + (o.id + i) % 5, round((1 + random() * 300)::numeric, 2)
FROM shop.orders o
CROSS JOIN LATERAL generate_series(1, 1 + (o.id % 4)::int) AS i;

INSERT INTO "Ops"."Audit Log" ("Event Type", "Customer", payload, happened_at, ratio, "select")
SELECT (ARRAY['login', 'logout', 'password_reset', 'export'])[1 + g % 4],
       CASE WHEN g % 10 = 0 THEN NULL ELSE 1 + g % (SELECT count(*) FROM shop.customers) END,
       jsonb_build_object('ip', '10.0.' || g % 255 || '.' || g % 7, 'ok', g % 9 <> 0),
       timestamp '2024-01-01 00:00:00' + g * interval '3 minutes 0.25 seconds',
       CASE g % 20 WHEN 0 THEN NULL ELSE 1.0 / (g % 19 + 1) END,
       g % 1000
FROM generate_series(1, {audit}) AS g;
"""


def seed_rows(scale: float = 1.0) -> dict[str, int]:
    """How many rows each table gets; scale 1.0 gives about 240,000 rows in all."""
    return {
        "customers": max(int(20_000 * scale), 10),
        "products": max(int(2_000 * scale), 10),
        "orders": max(int(60_000 * scale), 20),  # each order gets 1 to 4 items: about 2.5 per order
        "audit": max(int(10_000 * scale), 10),
    }


def seed(conn: psycopg.Connection, scale: float = 1.0) -> None:
    """Fill an empty shop schema with edge-case rows, then generated rows."""
    with conn.transaction():
        conn.execute(EDGE_CASE_CUSTOMERS_SQL)
        counts = {key: sql.Literal(value) for key, value in seed_rows(scale).items()}
        conn.execute(sql.SQL(SEED_SQL).format(**counts))
        conn.execute("ANALYZE")
