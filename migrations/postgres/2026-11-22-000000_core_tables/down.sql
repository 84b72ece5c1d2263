DROP TABLE api_keys;
DROP TABLE destinations;
DROP TABLE orchestrators;
DROP TABLE organizations;
