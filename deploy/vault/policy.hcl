# Vault policy of credential-broker: exactly what the broker reads, nothing it could write.
#   vault policy write credential-broker deploy/vault/policy.hcl
# Paths are those of deploy/kubernetes (secrets at secret/providers/<name>, KV v2 mount "secret", the grant
# encryption key at secret/broker/token-key); adjust them to where your secrets live. For a KV mount whose
# name has a slash (secret: "kv/platform:providers/kivra") the paths are kv/platform/data/providers/... .

# Provider client secrets: the data of the current version, and the metadata that the rotation check reads
# (the current version number, every SECRET_CHECK_INTERVAL_SECONDS).
path "secret/data/providers/*" {
  capabilities = ["read"]
}
path "secret/metadata/providers/*" {
  capabilities = ["read"]
}

# The grant encryption key (TOKEN_ENCRYPTION_KEY=vault:secret/broker/token-key#keys), data and metadata.
path "secret/data/broker/token-key" {
  capabilities = ["read"]
}
path "secret/metadata/broker/token-key" {
  capabilities = ["read"]
}

# The broker's own token: lookup-self (validating VAULT_TOKEN, telling a dead token from a path it may not
# read) and renew-self (at about 2/3 of its TTL). Vault's "default" policy grants both as well; they are
# here so the policy also serves tokens created with no_default_policy.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
