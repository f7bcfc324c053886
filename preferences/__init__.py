"""Recipients, their contact points and their wishes: may this recipient get this category on
this channel? This app never imports notifyhub or channel backends."""
