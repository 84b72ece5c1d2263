-- Only attempts no worker holds are news: the fan-out's first attempts are leased to the
-- worker that made them and sent by it at once, and a notification for them would only wake
-- every worker (that one included) into a claim that finds nothing.
DROP TRIGGER webhook_deliveries_notify_work ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_notify_work AFTER INSERT ON webhook_deliveries
    FOR EACH ROW WHEN (NEW.lease_until IS NULL) EXECUTE FUNCTION mandate_notify_work();
