-- The service's schema at version 3 (before tenants), as SQLite wrote it
CREATE TABLE schema_version (
	id INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE api_keys (
	id VARCHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	scopes VARCHAR(200) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_api_keys_key_hash ON api_keys (key_hash);
CREATE TABLE scenarios (
	id VARCHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	body JSON NOT NULL, 
	created_by VARCHAR(32), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_scenarios_created_at ON scenarios (created_at);
CREATE TABLE jobs (
	id VARCHAR(32) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	progress FLOAT NOT NULL, 
	request JSON NOT NULL, 
	error TEXT, 
	plan_id VARCHAR(32), 
	idempotency_key VARCHAR(200), 
	request_hash VARCHAR(64), 
	created_by VARCHAR(32), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	owner VARCHAR(100), 
	PRIMARY KEY (id)
);
CREATE INDEX ix_jobs_status ON jobs (status);
CREATE UNIQUE INDEX ix_jobs_idempotency ON jobs (created_by, idempotency_key);
CREATE INDEX ix_jobs_idempotency_key ON jobs (idempotency_key);
CREATE TABLE catalog_entries (
	id VARCHAR(32) NOT NULL, 
	catalog VARCHAR(100) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	entry_id VARCHAR(100) NOT NULL, 
	body JSON NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_catalog_entries_catalog ON catalog_entries (catalog);
CREATE TABLE plans (
	id VARCHAR(32) NOT NULL, 
	scenario_id VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	result JSON NOT NULL, 
	audit JSON NOT NULL, 
	created_by VARCHAR(32), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(scenario_id) REFERENCES scenarios (id)
);
CREATE INDEX ix_plans_scenario_id ON plans (scenario_id);
CREATE TABLE sessions (
	id VARCHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	scenario_id VARCHAR(32) NOT NULL, 
	comparison JSON, 
	created_by VARCHAR(32), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(scenario_id) REFERENCES scenarios (id)
);
CREATE TABLE variants (
	id VARCHAR(32) NOT NULL, 
	session_id VARCHAR(32) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	changes JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(session_id) REFERENCES sessions (id)
);
CREATE INDEX ix_variants_session_id ON variants (session_id);
