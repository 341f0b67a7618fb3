# E-maily, čeština. Stejné klíče jako v každém server/locales/<lang>/mail.ftl.

mail-invitation-subject = Váš přístup do portálu ivan
mail-invited-employer = portálu zaměstnavatelů ivan jako { $role }
mail-invited-officer = portálu ivan jako pracovník kontroly organizace { $organisation }
mail-invitation-body =
    Zveme Vás do { $invited_as } ({ $email }).

    Otevřete tento odkaz na zařízení, ve kterém bude uložen Váš přístupový klíč, nejpozději { $expires }:

    { $link }

    Odkaz funguje pouze jednou. Pokud jste tuto zprávu neočekávali, ignorujte ji.
