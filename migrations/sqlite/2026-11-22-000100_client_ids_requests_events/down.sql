DROP TABLE events;
DROP TABLE payment_links;
DROP TABLE payments;
DROP TABLE payment_requests;
DROP TABLE client_ids;
