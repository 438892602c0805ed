"""The EMR Serverless target (`PIPELINE_TARGET=emr-serverless`): preflight and the code upload as on
EMR, an EMR Serverless application per run as the run's setup, one deferrable job run per step
(`plugins/emr_serverless.py`), the application stopped and deleted as the teardown.

Why an application per run, not a long-lived one per profile with auto-stop: it is the transient
cluster's analogue. The release label, the network and the capacity follow the settings of the run
that creates it, so a changed `PIPELINE_EMR_RELEASE` or profile takes effect at the next run, not
after someone updates a shared application; concurrent runs and backfills never share (or queue
behind) each other's capacity; each run's cost is its own application's; and a repair gets a new
application as a repaired EMR run gets a new cluster. A long-lived application would save little:
a nightly finds it stopped after auto-stop anyway, so its cold start is the same, and
pre-initialized capacity would only help within a run, where the application is warm already.

The emr-serverless API calls this target makes (the Airflow role needs exactly these; the job
runtime role, PIPELINE_SERVERLESS_EXECUTION_ROLE, is passed to the job runs):
    emr-serverless:CreateApplication    setup: the run's application (tagged with the run's tags)
    emr-serverless:ListApplications     setup: a retried create finds the run's application by name
    emr-serverless:GetApplication       setup waits for CREATED; a step waits for STARTED
    emr-serverless:StartApplication     a step starts the application if it is not started
    emr-serverless:StartJobRun          a step's job run (tagged with the run's tags)
    emr-serverless:ListJobRuns          a retried step finds its job run by name; a failed step and
                                        the teardown find the run's job runs still running
    emr-serverless:GetJobRun            a deferred step watches its job run; the run report reads it
    emr-serverless:CancelJobRun         a failed step cancels the others; on kill/Mark failed; teardown
    emr-serverless:StopApplication      teardown
    emr-serverless:DeleteApplication    teardown
    emr-serverless:TagResource          tags given with CreateApplication and StartJobRun
    iam:PassRole                        the job runtime role, to emr-serverless.amazonaws.com
    iam:CreateServiceLinkedRole         once per account: AWSServiceRoleForAmazonEMRServerless
                                        (the application's network interfaces in the subnet)
    s3:GetObject, s3:ListBucket         the failed job run's driver stderr under PIPELINE_EMR_LOG_URI
"""
