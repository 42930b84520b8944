/*
 * jira-relay: ServiceNow -> relay business rule (docs/deploy.md, "The ServiceNow side").
 *
 * Business rule settings (System Definition > Business Rules > New):
 *   Name:      jira-relay: send incident
 *   Table:     Incident [incident]
 *   Advanced:  checked
 *   When:      after           Insert: checked   Update: checked
 *   Filter:    none (the script decides; see FIELDS below)
 *   Script:    this file
 *
 * System properties it reads (System Properties > sys_properties.list > New):
 *   jira_relay.endpoint      string  the stack's ServiceNowWebhookUrl output,
 *                                    https://<api>.execute-api.<region>.amazonaws.com/<stage>/webhooks/servicenow
 *   jira_relay.auth_profile  string  sys_id of a Basic Auth Profile (System Web Services >
 *                                    REST > Basic Auth Profiles) holding the user name and
 *                                    password of the jira-relay/<stage>/servicenow-sender secret
 *   jira_relay.integration_user  string  user name of the relay's integration user (the
 *                                    jira-relay/<stage>/servicenow secret), default relay.integration
 *
 * What it posts (what config/relay.yaml's ServiceNow rules read):
 *   {event: "incident.created" | "incident.updated", sys_id, number, short_description,
 *    description, priority, state, comments, sys_updated_by, sys_updated_on,
 *    changes: [{field, from, to}, ...]}
 * `comments` is the newest additional comment when this update added one, else "".
 *
 * Echo guard: changes the relay itself made (as its integration user) are not sent back,
 * or a Jira comment copied here would be copied to Jira again. The relay drops them
 * too (the endpoint's whitelist); skipping here saves the call.
 */
(function executeRule(current, previous /* null when async */) {
    var ENDPOINT = gs.getProperty('jira_relay.endpoint', '');
    var AUTH_PROFILE = gs.getProperty('jira_relay.auth_profile', '');
    var INTEGRATION_USER = gs.getProperty('jira_relay.integration_user', 'relay.integration');

    // Fields whose changes are reported in `changes` (add the ones your rules use).
    var FIELDS = ['short_description', 'description', 'priority', 'impact', 'urgency', 'state',
        'assigned_to', 'assignment_group', 'category', 'close_code', 'close_notes'];

    if (!ENDPOINT || !AUTH_PROFILE) {
        gs.warn('jira-relay: set the system properties jira_relay.endpoint and jira_relay.auth_profile');
        return;
    }
    if (gs.getUserName() === INTEGRATION_USER) {
        return; // the relay's own change: do not echo it back
    }

    var isInsert = current.operation() === 'insert';
    var changes = [];
    if (!isInsert && previous) {
        for (var i = 0; i < FIELDS.length; i++) {
            var field = FIELDS[i];
            if (current.isValidField(field) && current[field].changes()) {
                changes.push({
                    field: field,
                    from: previous.getValue(field) || '',
                    to: current.getValue(field) || ''
                });
            }
        }
    }
    var comments = '';
    if (current.comments.changes()) {
        comments = current.comments.getJournalEntry(1) || '';
    }
    // An update that changed none of the fields and added no comment: nothing to send.
    if (!isInsert && changes.length === 0 && comments === '') {
        return;
    }

    var body = {
        event: isInsert ? 'incident.created' : 'incident.updated',
        sys_id: current.getUniqueValue(),
        number: current.getValue('number'),
        short_description: current.getValue('short_description') || '',
        description: current.getValue('description') || '',
        priority: current.getValue('priority') || '',
        state: current.getValue('state') || '',
        comments: comments,
        sys_updated_by: current.getValue('sys_updated_by') || gs.getUserName(),
        sys_updated_on: current.getValue('sys_updated_on') || '',
        changes: changes
    };

    try {
        var request = new sn_ws.RESTMessageV2();
        request.setEndpoint(ENDPOINT);
        request.setHttpMethod('post');
        request.setAuthenticationProfile('basic', AUTH_PROFILE);
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Accept', 'application/json');
        request.setHttpTimeout(10000);
        request.setRequestBody(JSON.stringify(body));
        // Asynchronous: the user's save never waits for AWS. The relay answers 202 once
        // the event is queued; failures show in System Logs > Outbound HTTP Requests.
        request.executeAsync();
    } catch (ex) {
        gs.error('jira-relay: could not send ' + body.number + ': ' + ex.message);
    }
})(current, previous);
