# Mails, English (the default). Same keys in every server/locales/<lang>/mail.ftl.
# Employers' mails are in the employer's language (ivan admin employer
# set-language), invitations in the invited user's (user invite --language).

mail-subject-receipt = Filing received: { $id }
mail-subject-answer = Authority answer for filing { $id }
mail-subject-overdue = Forwarding overdue: filing { $id }
mail-subject-preregistration-digest = Pre-registrations waiting for their registration form
mail-subject-invitation = Your access to the ivan portal
mail-subject-phone-alert = A phone access was locked
mail-subject-certificate-expiry = A signing certificate expires soon
mail-frame =
    { $detail }

    Message id: { $id }
    Details: GET /api/v1/submissions/{ $id }

    This message was sent by ivan; the signed receipt and the authority's answers are
    available through the API.
mail-receipt = Your { $type } was received and accepted as { $number } at { $at }. { $when }
mail-receipt-cancellable = It can be cancelled until { $until }.
mail-receipt-forwarding = It is being forwarded to the authority.
mail-answer = The authority has answered: { $state } ({ $count } answer document(s)).
mail-overdue = The filing has not reached the authority within the promised time; ivan keeps trying and will deliver it as soon as the authority answers.
mail-digest-intro = { $count } pre-registration(s) filed from phones are past their deadline without a registration form:
mail-digest-line = - { $number } { $person }: { $given } { $surname }, { $kind } on { $effective }, due { $due } (GET /api/v1/preregistrations/{ $id }/registration-form)
mail-digest-outro = File the registration form for each; they pair automatically.
mail-cert-expiry = The signing certificate { $subject } (SHA-256 { $fingerprint }) registered for your filings expires at { $expires }, in { $days } day(s). Have its successor registered before then (ask the operator): filings signed with an expired certificate are refused.
mail-phone-locked = The phone access { $id } ({ $phone }) was locked after { $failures } wrong PINs within { $hours } hours, which looks like someone guessing its PIN. Its sessions have ended. Check with the phone user, then generate a new PIN (POST /api/v1/phone-accesses/{ $id }/pin) to unlock it.
mail-invited-employer = the ivan employer portal as { $role }
mail-invited-officer = the ivan portal as a compliance officer of { $organisation }
mail-invitation-body =
    You are invited to { $invited_as } ({ $email }).

    Open this link on the device that will hold your passkey, before { $expires }:

    { $link }

    The link works once. If you did not expect this message, ignore it.
