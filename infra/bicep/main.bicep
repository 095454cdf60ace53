// nightshift on Azure Functions, Flex Consumption (FC1), Go custom handler.
//
// Resource-group scope, one self-contained file of plain resources (no registry modules, so
// nothing needs restoring and the offline tree-sitter tests in infra/ see every resource):
//
//   az deployment group create -g <rg> -f infra/bicep/main.bicep -p environmentName=<env> ...
//   azd up            (azure.yaml; azd asks for, or uses AZURE_RESOURCE_GROUP)
//
// Storage has shared keys disabled: the host, the Go handler and the Flex deployment all use
// one user-assigned identity. The queue and container names below must equal
// storage.Layout (storage/layout.go, no NIGHTSHIFT_NAME_PREFIX); infra/policy_test.go checks it.
// docs/deploy.md describes deployment; the facts behind the settings are in
// shared/reference/deploy-and-azurite.md, section A.
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

@description('Optional object id of a user, group or service principal that gets the same storage data roles as the app, e.g. for the nightshift CLI. Empty: no grant.')
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
@description('HMAC-SHA256 key webhook callbacks are signed with (app setting NIGHTSHIFT_WEBHOOK_SECRET). Empty: webhook callbacks fail permanently; queue callbacks still work.')
param webhookSecret string = ''

@description('Key Vault key that wraps the data keys of encryption at rest (app setting NIGHTSHIFT_ENCRYPTION_KEY_URL), https://<vault>.vault.azure.net/keys/<name>; the app identity needs wrapKey and unwrapKey on it (Key Vault Crypto Service Encryption User). Empty: args, results and logs are stored unencrypted (docs/encryption.md).')
param encryptionKeyUrl string = ''

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var storageAccountName = 'st${resourceToken}'

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
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

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
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
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

// Host storage (leases, azure-webjobs-* containers), the Flex deployment package and the
// nightshift status/result/dead-letter blobs.
resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Queue trigger (receive, update visibility, delete, move to -poison) and re-enqueueing
// retries. Reader + Message Processor is not enough when a failed message is released.
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

// Optional: the same data roles for the deploying user, so the nightshift CLI can enqueue,
// follow jobs and replay dead letters with `az login` credentials.
resource userBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
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
    appBlobDataOwner
    appQueueDataContributor
    appMetricsPublisher
    deploymentContainer
    dataContainers
    queues
  ]
}

// App settings. On Flex the runtime is declared only in functionAppConfig: no
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE or
// WEBSITE_CONTENT* here. NIGHTSHIFT_NAME_PREFIX is left unset: this deployment owns its
// storage account, and the packaged function.json files use the unprefixed queue names.
// This resource replaces the whole set on every deployment. Later union() arguments win:
// extraAppSettings may override the defaults, and nothing overrides the last object.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: union(defaultAppSettings, extraAppSettings, {
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
    // nightshift's own settings.
    NIGHTSHIFT_WEBHOOK_SECRET: webhookSecret
    NIGHTSHIFT_ENCRYPTION_KEY_URL: encryptionKeyUrl
    // SSRF guards stay on: job arguments and callback URLs come from whoever can enqueue.
    NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'false'
    NIGHTSHIFT_WEBHOOK_ALLOW_PRIVATE: 'false'
    NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'
  })
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
output NIGHTSHIFT_API_BASE_URL string = 'https://${functionApp.properties.defaultHostName}/api'
