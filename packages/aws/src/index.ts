/**
 * @kms/aws: the AWS KMS provider for @kms/core. Register `awsKms` for configuration-driven set-up, or
 * build one with `awsKmsProvider({ region })`. See README.md for the IAM policy it needs.
 */
export { AWS_PERMISSIONS_DOCS_URL, PERMISSION_CHECK_CONTEXT, awsKms, awsKmsProvider, type AwsKmsProvider, type AwsKmsProviderOptions } from "./provider";
export { AWS_ROTATION_PERMISSIONS, AWS_RUNTIME_PERMISSIONS, AWS_SHREDDING_PERMISSIONS, type AwsRuntimePermission } from "./errors";
export { AWS_KEY_ID_RULE, awsKeyIdProblem, parseAwsKmsSettings, type AwsKmsSettings, type AwsStaticCredentials } from "./settings";
