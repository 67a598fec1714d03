DROP TRIGGER tickets_notify_availability ON tickets;
DROP FUNCTION tickets_notify_availability();
