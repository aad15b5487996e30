-- Gradual migration from the Python service: configs marked `job_ready` are run by the job;
-- the orchestrator can be pointed at this view (`--configs-view active_job_configs`).
CREATE OR REPLACE VIEW active_job_configs AS
    SELECT *
    FROM sheet_to_bigquery_configs
    WHERE is_active AND migration_status = 'job_ready';
