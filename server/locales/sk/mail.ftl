# E-maily, slovenčina. Rovnaké kľúče ako v každom server/locales/<lang>/mail.ftl.

mail-subject-receipt = Podanie prijaté: { $id }
mail-subject-answer = Odpoveď úradu k podaniu { $id }
mail-subject-overdue = Odoslanie úradu mešká: podanie { $id }
mail-subject-preregistration-digest = Predbežné registrácie čakajúce na registračný list
mail-subject-invitation = Váš prístup do portálu ivan
mail-subject-phone-alert = Prístup z telefónu bol zablokovaný
mail-subject-certificate-expiry = Platnosť podpisového certifikátu čoskoro uplynie
mail-frame =
    { $detail }

    Identifikátor správy: { $id }
    Podrobnosti: GET /api/v1/submissions/{ $id }

    Túto správu odoslal ivan; podpísané potvrdenie o prijatí a odpovede úradu sú
    dostupné cez API.
mail-receipt = Vaše podanie { $type } bolo prijaté pod číslom { $number } dňa { $at }. { $when }
mail-receipt-cancellable = Zrušiť ho môžete do { $until }.
mail-receipt-forwarding = Odosiela sa úradu.
mail-answer = Úrad odpovedal: { $state } (počet dokumentov odpovede: { $count }).
mail-overdue = Podanie sa k úradu nedostalo v sľúbenom čase; ivan to skúša ďalej a doručí ho, len čo úrad odpovie.
mail-digest-intro = Počet predbežných registrácií z telefónov po lehote bez registračného listu: { $count }
mail-digest-line = - { $number } { $person }: { $given } { $surname }, { $kind } k { $effective }, lehota { $due } (GET /api/v1/preregistrations/{ $id }/registration-form)
mail-digest-outro = Ku každej podajte registračný list; spárujú sa automaticky.
mail-cert-expiry = Platnosť podpisového certifikátu { $subject } (SHA-256 { $fingerprint }) registrovaného pre Vaše podania uplynie { $expires }, o { $days } d. Dajte si včas zaregistrovať jeho nástupcu (požiadajte prevádzkovateľa): podania podpísané certifikátom s uplynutou platnosťou sa odmietajú.
mail-phone-locked = Prístup z telefónu { $id } ({ $phone }) bol zablokovaný po { $failures } nesprávnych PIN v priebehu { $hours } h, čo vyzerá ako hádanie PIN. Jeho relácie sa skončili. Overte to u používateľa telefónu a potom vygenerujte nový PIN (POST /api/v1/phone-accesses/{ $id }/pin), ktorý prístup odblokuje.
mail-invited-employer = portálu zamestnávateľov ivan ako { $role }
mail-invited-officer = portálu ivan ako pracovník kontroly organizácie { $organisation }
mail-invitation-body =
    Pozývame Vás do { $invited_as } ({ $email }).

    Otvorte tento odkaz na zariadení, v ktorom bude uložený Váš prístupový kľúč, najneskôr { $expires }:

    { $link }

    Odkaz funguje iba raz. Ak ste túto správu neočakávali, ignorujte ju.
