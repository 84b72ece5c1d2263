DROP TRIGGER webhook_deliveries_notify_work ON webhook_deliveries;
CREATE TRIGGER webhook_deliveries_notify_work AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION mandate_notify_work();
