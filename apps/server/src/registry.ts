/**
 * The provider definitions this server installed: the only providers its configuration may name
 * (the same table as `kms`'s). Azure Key Vault (`@kms/azure`) authenticates with
 * `DefaultAzureCredential` from its environment, made only when a configuration names
 * `azure-key-vault`. Used by the setup wizard's configuration check (`POST /admin/config/check`).
 */
import { awsKms } from "@kms/aws";
import { azureKeyVault } from "@kms/azure";
import { localKms, type ProviderDefinition } from "@kms/core";
import { gcpKms } from "@kms/gcp";
import { vaultKms } from "@kms/vault";

export const REGISTRY: readonly ProviderDefinition<unknown>[] = [localKms, awsKms, vaultKms, gcpKms, azureKeyVault()];
