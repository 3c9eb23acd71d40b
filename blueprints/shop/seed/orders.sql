-- 10,000 customers and 100,000 orders of 1-3 catalogue products each, generated (no hand-written rows).
-- Deterministic: order i belongs to customer 1 + (i * 7919) % 10000 (7919 is prime to 10000, so every
-- customer has exactly 10 orders) and holds the products numbered 1 + (i * 31 + k * 17) % <products> (in id order), k = 1..1 + i % 3.
-- Statuses as a live shop has them: every 40th order declined, every 97th payment_failed, the newest 500
-- pending, the rest fulfilled; amounts are the sum of the items. Needs products (catalogue.sql) first.
-- Seeding again (`envkit seed RUN db`) replaces every customer and order with the seeded ones.
\set ON_ERROR_STOP 1
BEGIN;

-- The foreign keys (made by shop.migrate) are checked row by row on insert: 300,000 checks. Dropped
-- here and made again at the end, they are checked in one pass each: ~3x faster, and just as strict.
ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey, DROP CONSTRAINT order_items_product_id_fkey;
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey;
TRUNCATE order_items, orders, customers;

INSERT INTO customers (id, email, name)
SELECT i,
       format('customer%s@example.test', lpad(i::text, 5, '0')),
       (ARRAY['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Linus',
              'Radia', 'Dennis', 'Sophie', 'Tim', 'Hedy', 'John'])[1 + i % 16]
       || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov', 'Knuth', 'Allen', 'Thompson', 'Hamilton',
              'Torvalds', 'Perlman', 'Ritchie', 'Wilson', 'Berners-Lee', 'Lamarr', 'Backus', 'Goldberg'])[1 + i % 17]
FROM generate_series(1, 10000) AS i;

CREATE TEMPORARY TABLE seed_items ON COMMIT DROP AS
SELECT i AS order_id, p.id AS product_id, 1 + (i + k) % 4 AS quantity, p.price_cents AS unit_price_cents
FROM generate_series(1, 100000) AS i
CROSS JOIN LATERAL generate_series(1, 1 + i % 3) AS k
JOIN (SELECT id, price_cents, row_number() OVER (ORDER BY id) AS n FROM products) AS p
  ON p.n = 1 + (i * 31 + k * 17) % (SELECT count(*) FROM products);

INSERT INTO orders (id, customer_id, amount_cents, status, payment_id, created_at, fulfilled_at)
SELECT t.order_id,
       1 + (t.order_id * 7919) % 10000,
       t.amount,
       s.status,
       CASE WHEN s.status IN ('fulfilled', 'pending') THEN format('ch_seed_%s', t.order_id) END,
       timestamptz '2024-01-01 00:00:00+00' + t.order_id * interval '5 minutes',
       CASE WHEN s.status = 'fulfilled'
            THEN timestamptz '2024-01-01 00:00:00+00' + t.order_id * interval '5 minutes' + interval '90 seconds' END
FROM (SELECT order_id, sum(quantity * unit_price_cents)::int AS amount FROM seed_items GROUP BY order_id) AS t
CROSS JOIN LATERAL (SELECT CASE WHEN t.order_id % 40 = 0 THEN 'declined'
                                WHEN t.order_id % 97 = 0 THEN 'payment_failed'
                                WHEN t.order_id > 99500 THEN 'pending'
                                ELSE 'fulfilled' END AS status) AS s
ORDER BY t.order_id;

INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents)
SELECT order_id, product_id, quantity, unit_price_cents FROM seed_items;

-- Rows inserted with explicit ids: move the sequences past them, so the API's new rows do not collide.
SELECT setval('customers_id_seq', (SELECT max(id) FROM customers));
SELECT setval('orders_id_seq', (SELECT max(id) FROM orders));

ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers;
ALTER TABLE order_items
    ADD CONSTRAINT order_items_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders ON DELETE CASCADE,
    ADD CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products;

COMMIT;
ANALYZE customers;
ANALYZE orders;
ANALYZE order_items;
