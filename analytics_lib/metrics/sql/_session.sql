-- Session set-up: objects that do not depend on the scope.

-- name: successful_statuses
CREATE OR REPLACE TEMP MACRO is_successful(status) AS
    status IN ('completed', 'refunded', 'partially_refunded', 'disputed')
