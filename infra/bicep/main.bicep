// nightshift on Azure Functions, Flex Consumption (FC1), Go custom handler.
//
// Resource-group scope, one self-contained file of plain resources (no registry modules, so
// nothing needs restoring and the offline tree-sitter tests in infra/ see every resource):
//
//   az deployment group create -g <rg> -f infra/bicep/main.bicep -p environmentName=<env> ...
//   azd up            (azure.yaml; azd asks for, or uses AZURE_RESOURCE_GROUP)
//
// Storage has shared keys disabled: the host, the Go handler and the Flex deployment all use
// one user-assigned identity, which holds blob data rights only on the containers it uses.
// Secrets (the webhook signing secrets) and the key-encryption key live in Key Vault (RBAC
// mode); storage, the app and the vault send their logs to the Log Analytics workspace.
// The queue and container names below must equal storage.Layout (storage/layout.go, no
// NIGHTSHIFT_NAME_PREFIX); infra/policy_test.go checks it.
// docs/deploy.md describes deployment and the facts behind the settings, with links to
// the Azure documentation.
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Environment name (the azd environment). Seeds the resource names and the azd-env-name tag.')
param environmentName string

@description('Location of every resource; default: the resource group\'s. Flex Consumption is not offered everywhere: az functionapp list-flexconsumption-locations.')
param location string = resourceGroup().location

@description('Optional object id of a user, group or service principal for the nightshift CLI: it gets Storage Blob Data Contributor and Storage Queue Data Contributor on the account, and Key Vault Crypto User on the key-encryption key. Empty: no grant.')
param principalId string = ''

@description('Kind of principalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Most instances the Flex Consumption plan scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('More app settings, e.g. NIGHTSHIFT_SCHEDULE_<NAME> to move a recurring job or NIGHTSHIFT_MAX_PAYLOAD_BYTES. The template owns the whole set of app settings (settings added by hand are removed by the next deployment), so put them here. They cannot override the identity, storage, telemetry and security settings.')
param extraAppSettings object = {}

@secure()
@description('Webhook signing secrets as a JSON object: URL origin ("https://host[:port]") -> secret string, or array of secrets (for rotation; see the webhook documentation). Stored as a Key Vault secret; the app setting NIGHTSHIFT_WEBHOOK_SECRETS is a Key Vault reference to it. Empty: "{}", webhook callbacks fail permanently; queue callbacks still work.')
param webhookSecrets string = ''

@description('Envelope encryption at rest of args, results and captured logs: creates an RSA key-encryption key in the vault, grants the app Key Vault Crypto User on it and sets NIGHTSHIFT_ENCRYPTION_KEY_URL.')
param enableEncryption bool = true

@description('Comma-separated blob containers the csv_stats job kind may read (app setting NIGHTSHIFT_CSV_CONTAINERS). Each must already exist in the storage account: the app identity gets Storage Blob Data Reader on each of them, and on nothing else outside its own containers. Empty: csv_stats reads nothing.')
param csvContainers string = ''

@description('Comma-separated queues a job callback may name (app setting NIGHTSHIFT_CALLBACK_QUEUES). They are never created at runtime: create them in this storage account. Empty: no queue callbacks.')
param callbackQueues string = ''

@description('Network default for the storage account and the vault: Allow (reachable from any network, protected by Entra ID) or Deny (only allowedIpRanges, private endpoints and trusted Azure services). Deny needs appSubnetId: the function app is not a trusted Azure service and otherwise cannot reach its own storage and vault.')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Allow'

@description('Public IPv4 addresses or CIDR ranges (e.g. "203.0.113.0/24") let through the storage and vault firewalls when networkDefaultAction is Deny, e.g. for the nightshift CLI or CI.')
param allowedIpRanges array = []

@description('Optional subnet resource id for private endpoints (storage blob, storage queue, vault). Empty: no private endpoints. DNS: link the privatelink.blob, privatelink.queue and privatelink.vaultcore zones to the VNet (docs/deploy.md).')
param privateEndpointSubnetId string = ''

@description('Optional subnet resource id for the function app\'s VNet integration (a subnet delegated to Microsoft.App/environments). Required for networkDefaultAction Deny; with private endpoints the app then reaches storage and the vault privately.')
param appSubnetId string = ''

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var storageAccountName = 'st${resourceToken}'
var keyVaultName = 'kv-${resourceToken}'

// Queues and containers of storage.Layout (storage/layout.go). Every queue has its
// "<queue>-poison" sibling: the host moves a message there after maxDequeueCount failures,
// and pre-creating it means the identity never has to create queues at runtime.
var queueNames = [
  'jobs-high'
  'jobs-high-poison'
  'jobs'
  'jobs-poison'
  'jobs-low'
  'jobs-low-poison'
]
var dataContainerNames = [
  'nightshift-status'
  'nightshift-results'
  'nightshift-deadletters'
  'nightshift-payloads'
  'nightshift-batches'
  'nightshift-unique'
  'nightshift-schedule'
  'nightshift-reports'
]

// The Functions host's own blob containers (identity-based AzureWebJobsStorage): leases for
// the host id and timer/singleton locks, timer schedule status (azure-webjobs-hosts) and
// function keys (azure-webjobs-secrets). Pre-created so that the identity's blob role can
// be scoped to them instead of to the whole account.
var hostContainerNames = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]

// Operator containers csv_stats may read (read-only role on each, see appCsvContainerReader).
var csvContainerNames = filter(map(split(csvContainers, ','), name => trim(name)), name => !empty(name))

// Storage and vault firewall rules from the network parameters.
var storageIpRules = [for ipRange in allowedIpRanges: {
  value: ipRange
  action: 'Allow'
}]
var vaultIpRules = [for ipRange in allowedIpRanges: {
  value: ipRange
}]

// App settings with defaults that extraAppSettings may override. The values equal the Go
// code's Default* constants (infra/policy_test.go checks it). The schedule of every
// recurring job, NIGHTSHIFT_SCHEDULE_<NAME>, belongs here: a generated
// functions/Recurring<Name>/function.json references it as %NIGHTSHIFT_SCHEDULE_<NAME>%, and
// the host cannot index the function without it (schedule.DefaultSettings lists them;
// infra/deployfiles_test.go fails while a referenced setting is missing).
var defaultAppSettings = {
  NIGHTSHIFT_SCHEDULE_MAINTENANCE: '0 30 2 * * *'
  NIGHTSHIFT_RETENTION_DAYS: '14'
  NIGHTSHIFT_DEADLETTER_RETENTION_DAYS: '90'
  NIGHTSHIFT_MAX_PAYLOAD_BYTES: '67108864'
}

// Flex Consumption keeps the deployed package here (functionAppConfig.deployment).
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// Built-in role definitions (the same GUID in every tenant).
var roleIds = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultCryptoUser: '12338af0-0e69-4776-bea7-57ae8d297424'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

// The diagnostic categories storage services emit: every read, write and delete request,
// and the per-transaction metrics.
var storageServiceLogs = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]
var storageServiceMetrics = [
  {
    category: 'Transaction'
    enabled: true
  }
]

// ---------------------------------------------------------------------------------------
// Monitoring: Log Analytics + workspace-based Application Insights, Entra-only ingestion
// ---------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------
// Identity: one user-assigned identity for host storage, the Go code, deployment and telemetry
// ---------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------
// Storage: no shared keys, TLS 1.2, no public blobs
// ---------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    // The firewall (networkAcls) decides who may connect; public access stays enabled so
    // that allowedIpRanges keep working with networkDefaultAction Deny.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
      ipRules: storageIpRules
      virtualNetworkRules: []
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource dataContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in dataContainerNames: {
    parent: blobService
    name: name
    properties: {
      publicAccess: 'None'
    }
  }
]

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in hostContainerNames: {
    parent: blobService
    name: name
    properties: {
      publicAccess: 'None'
    }
  }
]

// Containers of the operator's that csv_stats may read; they must exist (not created here).
resource csvContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for name in csvContainerNames: {
    parent: blobService
    name: name
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in queueNames: {
    parent: queueService
    name: name
  }
]

// ---------------------------------------------------------------------------------------
// Role assignments, each at the narrowest scope that works
// ---------------------------------------------------------------------------------------

// Blob data: Storage Blob Data Contributor on each container the app uses, not on the
// account: the nightshift data containers, the host's azure-webjobs-* containers and the
// Flex deployment container. Contributor reads, writes and deletes blobs but cannot change
// ACLs or take ownership (Storage Blob Data Owner could); other containers in the account
// stay out of reach of job code and of whoever controls job input.
resource appBlobDataContributorData 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in dataContainerNames: {
    name: guid(dataContainers[i].id, identity.id, roleIds.storageBlobDataContributor)
    scope: dataContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appBlobDataContributorHost 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in hostContainerNames: {
    name: guid(hostContainers[i].id, identity.id, roleIds.storageBlobDataContributor)
    scope: hostContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource appBlobDataContributorDeployment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deploymentContainer.id, identity.id, roleIds.storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Blob index tags on the status and dead-letter records (docs/storage-layout.md): every
// status or dead-letter write sets them in its Put (blobs/tags/write), listings by state,
// kind, queue, batch, reason, cause or time find records by them (blobs/filter/action,
// Find Blobs by Tags in the container) and the reindex reads them (blobs/tags/read). Storage Blob Data Contributor has none of the
// three, and Storage Blob Data Owner also manages ACLs and ownership: a custom role with
// exactly these data actions, assignable in this resource group only (its name carries the
// resource token: role names are unique in a tenant), on the status and dead-letters
// containers only (dataContainerNames[0] is nightshift-status, [2] nightshift-deadletters).
resource blobIndexTagsRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'nightshift-blob-index-tags')
  properties: {
    roleName: 'nightshift blob index tags ${resourceToken}'
    description: 'Read, write and find by blob index tags; nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource appBlobIndexTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataContainers[0].id, identity.id, 'nightshift-blob-index-tags')
  scope: dataContainers[0]
  properties: {
    roleDefinitionId: blobIndexTagsRole.id
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource appDeadLetterIndexTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataContainers[2].id, identity.id, 'nightshift-blob-index-tags')
  scope: dataContainers[2]
  properties: {
    roleDefinitionId: blobIndexTagsRole.id
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// User delegation SAS links for large results (GET /api/jobs/{id}). Get User Delegation Key
// is an account-level operation, so its only action (generateUserDelegationKey) must be
// granted on the account; Storage Blob Delegator has nothing else. A SAS never grants more
// than the signer's own data roles, i.e. the containers above.
resource appBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleIds.storageBlobDelegator)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDelegator)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// csv_stats: read-only on each container listed in csvContainers.
resource appCsvContainerReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in csvContainerNames: {
    name: guid(csvContainer[i].id, identity.id, roleIds.storageBlobDataReader)
    scope: csvContainer[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataReader)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Queue trigger (receive, update visibility, delete, move to -poison) and re-enqueueing
// retries. Reader + Message Processor is not enough when a failed message is released.
// Account scope, because callback queues (callbackQueues) are created by the operator in
// this account, outside the template; the app still never creates a queue itself.
resource appQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Entra-authenticated telemetry ingestion (App Insights has local auth disabled).
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Optional: data roles for the deploying user, so the nightshift CLI can enqueue, follow jobs
// and replay dead letters with `az login` credentials (account scope: an operator).
resource userBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roleIds.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// The CLI's `nightshift jobs --state …` and `jobs reindex` use the same tags, and
// `nightshift dead list --reason …` and `dead reindex` those of the dead letters.
resource userBlobIndexTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(dataContainers[0].id, principalId, 'nightshift-blob-index-tags')
  scope: dataContainers[0]
  properties: {
    roleDefinitionId: blobIndexTagsRole.id
    principalId: principalId
    principalType: principalType
  }
}

resource userDeadLetterIndexTags 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(dataContainers[2].id, principalId, 'nightshift-blob-index-tags')
  scope: dataContainers[2]
  properties: {
    roleDefinitionId: blobIndexTagsRole.id
    principalId: principalId
    principalType: principalType
  }
}

resource userQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// The CLI encrypts args and decrypts results with the same key-encryption key.
resource userKeyVaultCryptoUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId) && enableEncryption) {
  name: guid(kek.id, principalId, roleIds.keyVaultCryptoUser)
  scope: kek
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoUser)
    principalId: principalId
    principalType: principalType
  }
}

// ---------------------------------------------------------------------------------------
// Key Vault: RBAC mode, soft delete + purge protection; the key-encryption key and the
// webhook secrets
// ---------------------------------------------------------------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC decides data access (no access policies).
    enableRbacAuthorization: true
    // Deleted keys and secrets stay recoverable for 90 days and cannot be purged early:
    // losing the key-encryption key would make every encrypted blob unreadable.
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
      ipRules: vaultIpRules
      virtualNetworkRules: []
    }
  }
}

// Key-encryption key for envelope encryption at rest: the app wraps and unwraps AES-256 data
// keys with it and can do nothing else with the key. NIGHTSHIFT_ENCRYPTION_KEY_URL is its
// versionless URI: the app wraps with the current version, and each wrapped data key
// records the versioned key id it needs to unwrap. Redeploying does not change the key
// material (Key Vault creates a key only if none exists); rotate with `az keyvault key rotate`.
resource kek 'Microsoft.KeyVault/vaults/keys@2023-07-01' = if (enableEncryption) {
  parent: vault
  name: 'nightshift-kek'
  properties: {
    kty: 'RSA'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
  }
}

// The webhook signing secrets (JSON). The app reads them through a Key Vault reference.
resource webhookSecretsSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'nightshift-webhook-secrets'
  properties: {
    contentType: 'application/json'
    value: empty(webhookSecrets) ? '{}' : webhookSecrets
  }
}

// Wrap/unwrap with the key-encryption key, scoped to that key alone.
resource appKeyVaultCryptoUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableEncryption) {
  name: guid(kek.id, identity.id, roleIds.keyVaultCryptoUser)
  scope: kek
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultCryptoUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Resolving the Key Vault reference of NIGHTSHIFT_WEBHOOK_SECRETS, scoped to that secret alone.
resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(webhookSecretsSecret.id, identity.id, roleIds.keyVaultSecretsUser)
  scope: webhookSecretsSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------
// Private endpoints (optional): storage blob and queue, the vault. DNS is not managed here:
// link privatelink.blob.<storage suffix>, privatelink.queue.<storage suffix> and
// privatelink.vaultcore.azure.net to the VNet and add the endpoints' records (docs/deploy.md).
// ---------------------------------------------------------------------------------------

resource blobPrivateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = if (!empty(privateEndpointSubnetId)) {
  name: 'pe-blob-${resourceToken}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'blob'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'blob'
          ]
        }
      }
    ]
  }
}

resource queuePrivateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = if (!empty(privateEndpointSubnetId)) {
  name: 'pe-queue-${resourceToken}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'queue'
        properties: {
          privateLinkServiceId: storage.id
          groupIds: [
            'queue'
          ]
        }
      }
    ]
  }
}

resource vaultPrivateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = if (!empty(privateEndpointSubnetId)) {
  name: 'pe-vault-${resourceToken}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: privateEndpointSubnetId
    }
    privateLinkServiceConnections: [
      {
        name: 'vault'
        properties: {
          privateLinkServiceId: vault.id
          groupIds: [
            'vault'
          ]
        }
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------
// Flex Consumption plan and function app (custom handler runtime)
// ---------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, {
    'azd-service-name': 'nightshift'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with the user-assigned identity (the default would be a
    // system-assigned identity, which this app does not have).
    keyVaultReferenceIdentity: identity.id
    // VNet integration (optional; required when networkDefaultAction is Deny).
    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
  // The app reads its package and host storage with the identity from its first start.
  dependsOn: [
    appBlobDataContributorData
    appBlobDataContributorHost
    appBlobDataContributorDeployment
    appBlobDelegator
    appQueueDataContributor
    appMetricsPublisher
    appKeyVaultSecretsUser
    appKeyVaultCryptoUser
    deploymentContainer
    dataContainers
    hostContainers
    queues
  ]
}

// No FTP and no basic-auth (user name/password) deployments: publishing needs Entra ID.
resource ftpPublishingPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishingPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// App settings. On Flex the runtime is declared only in functionAppConfig: no
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE or
// WEBSITE_CONTENT* here. NIGHTSHIFT_NAME_PREFIX is left unset: this deployment owns its
// storage account, and the packaged function.json files use the unprefixed queue names.
// This resource replaces the whole set on every deployment. Later union() arguments win:
// extraAppSettings may override the defaults, and nothing overrides the objects after it.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(defaultAppSettings, extraAppSettings, enableEncryption ? {
    // The key-encryption key (versionless URI: wrap with the current version).
    NIGHTSHIFT_ENCRYPTION_KEY_URL: kek.properties.keyUri
  } : {}, {
    // Identity-based host storage (also read by storage.FromEnv in the Go code).
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    // Lets azidentity in the Go code pick the user-assigned identity, and only that.
    AZURE_CLIENT_ID: identity.properties.clientId
    AZURE_TOKEN_CREDENTIALS: 'ManagedIdentityCredential'
    // Telemetry, Entra-authenticated.
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // nightshift's own settings. Secrets only as Key Vault references (versionless: the
    // platform fetches a new secret version within 24 hours, and at once on any change of
    // the app's configuration, such as the next deployment).
    NIGHTSHIFT_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${webhookSecretsSecret.properties.secretUri})'
    NIGHTSHIFT_CSV_CONTAINERS: csvContainers
    NIGHTSHIFT_CALLBACK_QUEUES: callbackQueues
    // SSRF guards stay on: job arguments and callback URLs come from whoever can enqueue.
    NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'false'
    NIGHTSHIFT_WEBHOOK_ALLOW_PRIVATE: 'false'
    NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'
  })
}

// ---------------------------------------------------------------------------------------
// Diagnostic settings: everything to the Log Analytics workspace
// ---------------------------------------------------------------------------------------

resource storageDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: storage
  properties: {
    workspaceId: logAnalytics.id
    metrics: storageServiceMetrics
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalytics.id
    logs: storageServiceLogs
    metrics: storageServiceMetrics
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalytics.id
    logs: storageServiceLogs
    metrics: storageServiceMetrics
  }
}

resource functionAppDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment; the hooks in azure.yaml read them)
// ---------------------------------------------------------------------------------------

output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.properties.primaryEndpoints.blob
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.properties.primaryEndpoints.queue
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output APPLICATIONINSIGHTS_NAME string = appInsights.name
output AZURE_KEY_VAULT_NAME string = vault.name
output NIGHTSHIFT_ENCRYPTION_KEY_URL string = enableEncryption ? kek.properties.keyUri : ''
output NIGHTSHIFT_API_BASE_URL string = 'https://${functionApp.properties.defaultHostName}/api'
