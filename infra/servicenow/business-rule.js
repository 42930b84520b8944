/*
 * jira-relay: the ServiceNow -> relay business rules (infra/servicenow/README.md).
 *
 * ONE script for TWO business rules (System Definition > Business Rules > New,
 * Advanced checked, Script: this whole file):
 *
 *   "jira-relay: send incident"
 *     Table: Incident [incident]   When: after   Insert: checked   Update: checked
 *     Filter: none (the payload builder decides what is worth sending)
 *     Why "after" and not "async": an async rule gets no `previous` and its
 *     `current` is re-read from the database, so `changes()` no longer tells what
 *     this update changed. The rule is after; the HTTP call is asynchronous
 *     (executeAsync), so the user's save never waits for AWS.
 *
 *   "jira-relay: send user"   (docs/identity.md)
 *     Table: User [sys_user]   When: after   Insert, Update, Delete: checked
 *
 *   "jira-relay: send group membership"
 *     Table: Group Member [sys_user_grmember]   When: after   Insert, Delete: checked
 *
 *   "jira-relay: send incident attachment"
 *     Table: Attachment [sys_attachment]   When: async   Insert: checked
 *     Filter: Table name is incident (condition: current.table_name == 'incident')
 *     Runs in the background, so it sends synchronously (execute) and retries.
 *
 * It needs the Script Include `RelayPayload` (System Definition > Script Includes >
 * New: Name RelayPayload, Accessible from: All application scopes, Script: the whole
 * of infra/servicenow/relay-payload.js).
 *
 * System properties it reads (sys_properties.list > New, type string):
 *   jira_relay.endpoint          the stack's ServiceNowWebhookUrl output,
 *                                https://<api>.execute-api.<region>.amazonaws.com/<stage>/webhooks/servicenow
 *   jira_relay.auth_profile      sys_id of the Basic Auth Profile (System Web Services >
 *                                REST > Basic Auth Profiles) holding user name and password
 *                                of the jira-relay/<stage>/servicenow-sender secret
 *   jira_relay.integration_user  user name of the relay's integration user (the
 *                                jira-relay/<stage>/servicenow secret), default relay.integration
 *
 * The sender credential lives in that credential record, not in a property: the rule
 * hands it to RESTMessageV2 with setAuthenticationProfile('basic', <sys_id>), which sends
 * it as HTTP Basic (like setBasicAuth) without the password ever passing through a script
 * or a property.
 *
 * What it posts: see RelayPayload (relay-payload.js) and the README. Echo guard:
 * changes made by the integration user (the relay's own writes) are not sent back, or a
 * Jira comment copied here would be copied to Jira again. The relay's endpoint whitelist
 * drops them too; skipping here saves the call.
 */
(function executeRule(current, previous /* null in the async attachment rule */) {
    var ENDPOINT = gs.getProperty('jira_relay.endpoint', '');
    var AUTH_PROFILE = gs.getProperty('jira_relay.auth_profile', '');
    var INTEGRATION_USER = gs.getProperty('jira_relay.integration_user', 'relay.integration');
    var INSTANCE = gs.getProperty('glide.servlet.uri', ''); // https://acme.service-now.com/
    var ATTEMPTS = 3;

    if (!ENDPOINT || !AUTH_PROFILE) {
        gs.warn('jira-relay: set the system properties jira_relay.endpoint and jira_relay.auth_profile');
        return;
    }

    // String(): Rhino may hand back Java strings, which are never === a JS string.
    var table = String(current.getTableName());
    var isAttachment = table === 'sys_attachment';
    var payload = null;
    var what = '';
    // Who made this change: for a delete, sys_updated_by still names the last editor.
    var actor = String(gs.getUserName());
    if (table === 'sys_user' || table === 'sys_user_grmember') {
        if (actor === String(INTEGRATION_USER)) {
            return; // the relay's own change (the pairing, a deactivation)
        }
        if (table === 'sys_user') {
            payload = RelayPayload.buildUserPayload(current, previous, {by: actor});
        } else {
            var member = new GlideRecord('sys_user');
            if (!member.get(current.getValue('user'))) {
                gs.warn('jira-relay: membership ' + current.getUniqueValue() + ': no user '
                    + current.getValue('user'));
                return;
            }
            payload = RelayPayload.buildMembershipPayload(current, {user: member, by: actor});
        }
        if (payload === null) {
            return; // no watched user field changed
        }
        what = payload.event + ' ' + payload.user_name;
    } else if (isAttachment) {
        if (String(current.getValue('table_name')) !== 'incident') {
            return;
        }
        if (!RelayPayload.shouldSend(current, INTEGRATION_USER)) {
            return; // the relay uploaded it (a Jira attachment copied here)
        }
        var incident = new GlideRecord('incident');
        if (!incident.get(current.getValue('table_sys_id'))) {
            gs.warn('jira-relay: attachment ' + current.getUniqueValue() + ': no incident '
                + current.getValue('table_sys_id'));
            return;
        }
        payload = RelayPayload.buildRelayPayload(current, null, {
            incident: incident,
            instanceUrl: INSTANCE
        });
        what = payload.number + ' attachment ' + payload.attachment.file_name;
    } else {
        if (!RelayPayload.shouldSend(current, INTEGRATION_USER) || String(gs.getUserName()) === String(INTEGRATION_USER)) {
            return; // the relay's own change: do not echo it back
        }
        payload = RelayPayload.buildRelayPayload(current, previous, {});
        if (payload === null) {
            return; // no watched field changed and no comment / work note added
        }
        what = payload.number + ' ' + payload.event;
    }

    function request() {
        var r = new sn_ws.RESTMessageV2();
        r.setEndpoint(ENDPOINT);
        r.setHttpMethod('post');
        r.setAuthenticationProfile('basic', AUTH_PROFILE);
        r.setRequestHeader('Content-Type', 'application/json');
        r.setRequestHeader('Accept', 'application/json');
        r.setHttpTimeout(10000);
        r.setRequestBody(JSON.stringify(payload));
        return r;
    }

    try {
        if (!isAttachment) {
            // Asynchronous: queued through the ECC queue, the save returns at once. The
            // relay answers 202 once the event is queued; failures show in System Logs >
            // Outbound HTTP Requests.
            request().executeAsync();
            return;
        }
        // Background job: send now, retry what may succeed later (network, 429, 5xx).
        for (var attempt = 1; attempt <= ATTEMPTS; attempt++) {
            var response = request().execute();
            var status = response.getStatusCode();
            if (status >= 200 && status < 300) {
                return;
            }
            var retryable = status === 0 || status === 429 || status >= 500;
            gs.error('jira-relay: ' + what + ': HTTP ' + status + ' (attempt ' + attempt + '/'
                + ATTEMPTS + '): ' + (response.getErrorMessage() || response.getBody()));
            if (!retryable || attempt === ATTEMPTS) {
                return;
            }
            gs.sleep(2000 * attempt);
        }
    } catch (ex) {
        gs.error('jira-relay: could not send ' + what + ': ' + ex.message);
    }
})(current, previous);
