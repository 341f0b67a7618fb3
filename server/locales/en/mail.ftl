# Mails, English (the default). Same keys in every server/locales/<lang>/mail.ftl.
# So far the invitation; the employers' mails follow.

mail-invitation-subject = Your access to the ivan portal
mail-invited-employer = the ivan employer portal as { $role }
mail-invited-officer = the ivan portal as a compliance officer of { $organisation }
mail-invitation-body =
    You are invited to { $invited_as } ({ $email }).

    Open this link on the device that will hold your passkey, before { $expires }:

    { $link }

    The link works once. If you did not expect this message, ignore it.
