-- Session set-up: objects that do not depend on the scope.

-- name: successful_statuses
CREATE OR REPLACE TEMP MACRO is_successful(status) AS
    status IN ('completed', 'refunded', 'partially_refunded', 'disputed')

-- name: boundaries_between
-- date_diff over TIMESTAMPTZ goes through ICU calendars, which is slow on millions of rows. With the
-- session's time zone UTC (warehouse.snapshot.connect), date_diff('day' | 'second' | 'millisecond',
-- a, b) is the number of unit boundaries between the epoch instants: floor(b / unit) - floor(a / unit)
-- in microseconds (// truncates towards zero, hence the correction for instants before 1970).
CREATE OR REPLACE TEMP MACRO boundaries_between(a, b, unit_us) AS
    (epoch_us(b) // unit_us - CASE WHEN epoch_us(b) % unit_us < 0 THEN 1 ELSE 0 END)
    - (epoch_us(a) // unit_us - CASE WHEN epoch_us(a) % unit_us < 0 THEN 1 ELSE 0 END)

-- name: utc_date
-- the UTC calendar day of an instant (CAST(ts AS DATE) under the session's UTC time zone, which
-- goes through ICU): the day whose FX rate converts an amount
CREATE OR REPLACE TEMP MACRO utc_date(ts) AS
    DATE '1970-01-01' + CAST(epoch_us(ts) // 86400000000
                             - CASE WHEN epoch_us(ts) % 86400000000 < 0 THEN 1 ELSE 0 END AS INTEGER)

-- name: days_between
CREATE OR REPLACE TEMP MACRO days_between(a, b) AS boundaries_between(a, b, 86400000000)

-- name: seconds_between
CREATE OR REPLACE TEMP MACRO seconds_between(a, b) AS boundaries_between(a, b, 1000000)

-- name: milliseconds_between
CREATE OR REPLACE TEMP MACRO milliseconds_between(a, b) AS boundaries_between(a, b, 1000)

-- name: rfm_score
-- RFM scores from a value and the 4 quintile cut points (customers.sql, _scope.sql rfm_cuts):
-- 1 + the number of cut points the value is above (5 = most frequent, most revenue); recency
-- counts the other way (5 = most recent: fewest days since the last payment)
CREATE OR REPLACE TEMP MACRO rfm_score(value, cuts) AS
    1 + (value > cuts[1])::INT + (value > cuts[2])::INT + (value > cuts[3])::INT + (value > cuts[4])::INT

-- name: rfm_recency_score
CREATE OR REPLACE TEMP MACRO rfm_recency_score(days, cuts) AS
    5 - (days > cuts[1])::INT - (days > cuts[2])::INT - (days > cuts[3])::INT - (days > cuts[4])::INT

-- name: rfm_segment
-- the usual RFM segment map from the recency and frequency scores
CREATE OR REPLACE TEMP MACRO rfm_segment(r_score, f_score) AS
    CASE
        WHEN r_score >= 4 AND f_score >= 4 THEN 'Champions'
        WHEN r_score >= 3 AND f_score >= 3 THEN 'Loyal'
        WHEN r_score >= 4 AND f_score <= 2 THEN 'New / promising'
        WHEN r_score = 3 AND f_score <= 2 THEN 'Potential loyalists'
        WHEN r_score <= 2 AND f_score >= 4 THEN 'Cannot lose them'
        WHEN r_score <= 2 AND f_score = 3 THEN 'At risk'
        WHEN r_score = 2 AND f_score <= 2 THEN 'Hibernating'
        ELSE 'Lost'
    END
