# E-maily, slovenčina. Rovnaké kľúče ako v každom server/locales/<lang>/mail.ftl.

mail-invitation-subject = Váš prístup do portálu ivan
mail-invited-employer = portálu zamestnávateľov ivan ako { $role }
mail-invited-officer = portálu ivan ako pracovník kontroly organizácie { $organisation }
mail-invitation-body =
    Pozývame Vás do { $invited_as } ({ $email }).

    Otvorte tento odkaz na zariadení, v ktorom bude uložený Váš prístupový kľúč, najneskôr { $expires }:

    { $link }

    Odkaz funguje iba raz. Ak ste túto správu neočakávali, ignorujte ju.
