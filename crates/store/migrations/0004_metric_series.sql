-- Samples keyed by an integer series id (one series per pool x metric) with a
-- single (series_id, ts_ms) index: inserts touch one small index instead of
-- two indexes keyed by 36-character pool ids. Existing samples are copied.
CREATE TABLE metric_series (
    id BIGINT PRIMARY KEY,
    pool_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    UNIQUE (pool_id, metric)
);

CREATE TABLE metric_points (
    series_id BIGINT NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL
);

INSERT INTO metric_series (id, pool_id, metric)
    SELECT ROW_NUMBER() OVER (ORDER BY pool_id, metric), pool_id, metric
    FROM (SELECT DISTINCT pool_id, metric FROM metric_samples) d;

INSERT INTO metric_points (series_id, ts_ms, value)
    SELECT s.id, m.ts_ms, m.value
    FROM metric_samples m JOIN metric_series s ON s.pool_id = m.pool_id AND s.metric = m.metric;

DROP TABLE metric_samples;

CREATE INDEX metric_points_series_ts ON metric_points (series_id, ts_ms);
