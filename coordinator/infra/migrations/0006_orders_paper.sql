-- Whether an order went to the in-process paper exchange (true) or to the Trader
-- (false), so that a paper fill is never taken for a live one afterwards. A coordinator
-- trading on paper says so on each of its connections (the session setting
-- coordinator.paper = on); every other connection writes false. Rows written before this
-- column existed stay NULL: not recorded.
ALTER TABLE coordinator_orders ADD COLUMN paper boolean;
ALTER TABLE coordinator_orders ALTER COLUMN paper
    SET DEFAULT coalesce(nullif(current_setting('coordinator.paper', true), '')::boolean, false);
