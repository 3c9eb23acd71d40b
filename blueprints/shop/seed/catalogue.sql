-- The product catalogue: a few hundred products from products.csv (copied in by the step before), loaded
-- with psql's \copy. Run by envkit's sql seed step (psql, ON_ERROR_STOP=1) as `shop` on database `shop`.
-- Seeding again (`envkit seed RUN db`) updates the products in place: their ids, which orders refer to, stay.
CREATE TEMPORARY TABLE seed_products (LIKE products INCLUDING DEFAULTS);
\copy seed_products (sku, name, category, price_cents, stock) FROM '/tmp/products.csv' WITH (FORMAT csv, HEADER true)
INSERT INTO products (sku, name, category, price_cents, stock)
SELECT sku, name, category, price_cents, stock FROM seed_products ORDER BY sku
ON CONFLICT (sku) DO UPDATE
    SET name = EXCLUDED.name, category = EXCLUDED.category, price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock;
ANALYZE products;
