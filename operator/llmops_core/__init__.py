"""The shared core every layer imports downward from: the llmops.dev API models and their checks,
CRD generation, operator-wide configuration, locations and storage, and the cross-component contracts.

It imports pydantic, PyYAML and (lazily, for s3://) boto3; never the renderer, the controller, the
images or the CLI. The trainer and server images install it alone beside their own package.
"""
