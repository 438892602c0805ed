"""Infrastructure of the emr target: the CloudFormation stack, its deployment and the TLS certificates."""
