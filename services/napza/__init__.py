"""Napza (drug-abuse) help requests, one module per responsibility: `partners` (the
organisations and their CSV import), `regions` (finding the requester's regency),
`intake` (creating a request; it commits), `routing` (candidates, offers, SLA,
escalation), `actions` (what partner staff, admins and the requester do), `relay`
(the relayed chat) and `retention` (purge and erasure); `common` holds what they share."""
