"""What a deployment of the pipeline needs in the AWS account, below the DAG-building code: the IAM
documents and their evaluator (iam/), the EMR security configuration and the private network
(emr_security), and preflight, which checks before a run that all of it is there.

This package imports nothing of include/: what it needs of the settings it is handed and reads by
attribute, so include/ (the EMR target's preflight task) and infra/ (the stack, which also builds
the documents from the settings: infra/documents.py) can both use it.
"""
